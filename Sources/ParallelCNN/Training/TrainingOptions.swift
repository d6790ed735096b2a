import Foundation

/// Everything that decides the result of a training run (engines aside, which all compute the
/// same mathematics). Stored in checkpoints so a resumed run continues the same run.
public struct TrainingOptions: Equatable, Sendable {
    public var rule: UpdateRule
    /// Samples per optimizer step (kept in `rule`, whose step factors depend on it).
    public var batchSize: Int {
        get { rule.batchSize }
        set { rule.batchSize = newValue }
    }
    /// Epochs to complete (a resumed run stops when this many are done in total).
    public var epochs: Int
    /// Seed of the epoch shuffles (modern recipe) and of `.seeded` initialisation.
    public var seed: UInt64
    public var initialization: Initialization
    /// Factor applied to the learning rate after each epoch (epoch e uses `lr · decay^e`).
    public var learningRateDecay: Float

    public var recipe: Recipe { rule.recipe }

    /// The update rule of epoch `epoch` (0-based) of `samples` training samples: the decayed
    /// learning rate, and the number of the epoch's first step (every epoch has
    /// ⌈samples / batch⌉ steps).
    public func rule(forEpoch epoch: Int, samples: Int) -> UpdateRule {
        var r = rule
        r.learningRate = rule.learningRate * Float(pow(Double(learningRateDecay), Double(epoch)))
        r.step = epoch * ((samples + batchSize - 1) / batchSize) + 1
        return r
    }

    public init(
        recipe: Recipe, optimizer: Optimizer? = nil, epochs: Int = 1, batchSize: Int? = nil,
        learningRate: Float? = nil, momentum: Float? = nil, seed: UInt64 = 1,
        initialization: Initialization = .original, learningRateDecay: Float? = nil
    ) {
        rule = UpdateRule(
            recipe: recipe, optimizer: optimizer, learningRate: learningRate, momentum: momentum,
            batchSize: batchSize ?? recipe.defaultBatchSize)
        self.epochs = epochs
        self.seed = seed
        self.initialization = initialization
        self.learningRateDecay = learningRateDecay ?? recipe.defaultLearningRateDecay(optimizer: rule.optimizer, batchSize: rule.batchSize)
    }

    /// The order in which epoch `epoch` (0-based) visits `count` training samples: file order for
    /// the original recipe, otherwise shuffled with `shuffleSeed(epoch:)`.
    public func sampleOrder(epoch: Int, count: Int) -> [Int32] {
        var order = (0..<Int32(count)).map { $0 }
        if recipe.shuffles { order.shuffle(seed: shuffleSeed(epoch: epoch)) }
        return order
    }

    /// The seed of epoch `epoch`'s shuffle; `stream` tells apart independent shuffles of one
    /// epoch (each data-parallel rank's shard: stream = rank, and rank 0's equals the whole set's).
    public func shuffleSeed(epoch: Int, stream: Int = 0) -> UInt64 {
        seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(epoch) &+ 1 &+ UInt64(stream) &* 0xD1B5_4A32_D192_ED03
    }
}

extension Array {
    /// Fisher–Yates driven by `SplitMix64(seed:)`: the program's one shuffle, for epoch orders
    /// and shard orders alike.
    mutating func shuffle(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for i in stride(from: count - 1, to: 0, by: -1) {
            swapAt(i, Int(rng.next() % UInt64(i + 1)))
        }
    }
}

/// Where a run stands: `epoch` epochs completed, and `position` samples into the next one.
public struct TrainingPosition: Equatable, Sendable {
    public var epoch: Int
    public var position: Int
    public init(epoch: Int = 0, position: Int = 0) {
        self.epoch = epoch
        self.position = position
    }
}
