/// What one optimizer step observed, measured before the step's update.
public struct StepStatistics: Sendable, Equatable {
    /// Sum over the step's samples of the per-sample loss: for `.original` the SPEC's training
    /// error `sqrt(Σ δ²)`, for `.modern` the cross-entropy `-log p[label]`.
    public var lossSum: Double = 0
    /// Samples whose prediction was wrong.
    public var misclassified: Int = 0
    /// Samples seen.
    public var samples: Int = 0

    public init(lossSum: Double = 0, misclassified: Int = 0, samples: Int = 0) {
        self.lossSum = lossSum
        self.misclassified = misclassified
        self.samples = samples
    }

    public static func + (a: StepStatistics, b: StepStatistics) -> StepStatistics {
        StepStatistics(
            lossSum: a.lossSum + b.lossSum, misclassified: a.misclassified + b.misclassified,
            samples: a.samples + b.samples)
    }

    public static func += (a: inout StepStatistics, b: StepStatistics) {
        a.lossSum += b.lossSum
        a.misclassified += b.misclassified
        a.samples += b.samples
    }
}

/// What the steps of a run (usually one epoch, or its rest after a resume) observed, accumulated
/// by the engine itself so that a device engine reports once per chunk instead of once per step.
public struct TrainingStatistics: Sendable, Equatable {
    /// The steps' statistics added up.
    public var total = StepStatistics()
    /// `Σ Float(step.lossSum)` in float, step by step: the original program's own running sum,
    /// from which SPEC's mean training error comes.
    public var floatLossSum: Float = 0
    /// Optimizer steps taken.
    public var steps = 0
    /// The first step (0-based, counted from the start of the epoch) whose loss was not finite.
    public var firstNonFiniteStep: Int?

    public init() {}

    /// Adds the step with number `step` of the epoch.
    public mutating func add(_ step: StepStatistics, number: Int) {
        total += step
        floatLossSum += Float(step.lossSum)
        steps += 1
        if firstNonFiniteStep == nil, !step.lossSum.isFinite { firstNonFiniteStep = number }
    }
}

/// One epoch as the trainer hands it to an engine: the order in which to visit the samples of the
/// prepared training set, cut into steps of `batchSize` positions, and the update rule (whose
/// `step` is the number of the step at position 0; the step at position `p` is `p / batchSize`
/// later).
public struct EpochPlan: Sendable {
    /// Sample indices into the training set given to `Engine.prepare(training:)` (for a sharded
    /// engine: global indices of the whole split, see `ShardedEngine`).
    public var order: [Int32]
    public var batchSize: Int
    public var rule: UpdateRule

    public init(order: [Int32], batchSize: Int, rule: UpdateRule) {
        precondition(batchSize >= 1, "batch size \(batchSize)")
        self.order = order
        self.batchSize = batchSize
        self.rule = rule
    }

    /// The position after the step that starts at `position`.
    public func stepEnd(after position: Int) -> Int { min(position + batchSize, order.count) }

    /// The rule of the step that starts at `position`.
    public func rule(at position: Int) -> UpdateRule { rule.advanced(by: position / batchSize) }
}

/// The optimizer's buffers besides the parameters, in canonical order; `nil` where the rule has
/// none (yet): they start at zero.
public struct OptimizerState: Equatable, Sendable {
    /// The momentum buffer of `.sgd` with momentum, or Adam's first moment `m`.
    public var velocity: Parameters?
    /// Adam's second moment `s`.
    public var secondMoment: Parameters?

    public init(velocity: Parameters? = nil, secondMoment: Parameters? = nil) {
        self.velocity = velocity
        self.secondMoment = secondMoment
    }
}

/// Why an engine cannot be made or cannot go on. Errors of a driver, compiler or library carry
/// its own message verbatim.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    /// The engine needs an optional system part this build or machine lacks; the text says how to get it.
    case unavailable(engine: String, remedy: String)
    /// A data-parallel rank was handed a sample outside its shard (a sample-order bug).
    case sampleNotInShard(Int)
    /// An option the engine does not take, or a value it cannot use.
    case invalidOption(engine: String, message: String)
    /// The engine was used out of order (for example trained before `prepare` or `beginEpoch`).
    case misuse(String)
    /// A call into a driver, runtime or library failed; `message` is that library's own text.
    case backend(engine: String, call: String, message: String)

    public var description: String {
        switch self {
        case .unavailable(let engine, let remedy): "the \(engine) engine is not available: \(remedy)"
        case .sampleNotInShard(let sample): "sample \(sample) is not in this rank's shard"
        case .invalidOption(let engine, let message): "\(engine) engine: \(message)"
        case .misuse(let message): "engine used out of order: \(message)"
        case .backend(let engine, let call, let message): "\(engine) engine: \(call) failed: \(message)"
        }
    }
}

/// One way of running the network. The trainer drives every engine through this protocol only.
///
/// The life of an engine: `prepare(training:)` once with the training set (a device engine
/// uploads it then), `load(parameters:optimizerState:)`, then per epoch `beginEpoch(_:at:)` and
/// `train(until:)` as many times as the trainer likes (each call may run thousands of steps
/// without returning to the host), `statistics()` when the trainer wants figures, and
/// `currentParameters()` for hashes and checkpoints. Results never depend on how an epoch is
/// cut into `train(until:)` calls.
///
/// An engine owns all its buffers, so a step allocates nothing. Engines are used from one
/// thread at a time. Every call may throw; the errors are `EngineError`s or the backend's own.
public protocol Engine: AnyObject {
    /// The `--engine` name and its options, for reports (for example `threads(T=2, data)`).
    var description: String { get }

    /// The processes this engine runs on: this process alone, or every MPI rank.
    var processGroup: any ProcessGroup { get }

    /// Hands the engine the training set, once, before any epoch.
    func prepare(training data: Dataset) throws

    /// Replaces the parameters and the optimizer's buffers (each `nil` one is zero).
    func load(parameters: Parameters, optimizerState: OptimizerState) throws

    /// The current parameters.
    func currentParameters() throws -> Parameters

    /// The optimizer's current buffers: `nil` for each one the steps so far have not used.
    func currentOptimizerState() throws -> OptimizerState

    /// Starts (or, with `position > 0`, resumes) an epoch and clears the statistics.
    func beginEpoch(_ plan: EpochPlan, at position: Int) throws

    /// Trains the steps from the current position up to position `end` of the plan's order;
    /// `end` is a step boundary or the end of the order.
    func train(until end: Int) throws

    /// The statistics of the steps since `beginEpoch`.
    func statistics() throws -> TrainingStatistics

    /// Waits until all work handed to the engine is done (for timing).
    func synchronize() throws

    /// Predicted classes of the samples `range` of `data`, written to `predictions` (one per sample).
    func predict(_ data: Dataset, range: Range<Int>, recipe: Recipe, into predictions: UnsafeMutableBufferPointer<UInt8>) throws
}

extension Engine {
    public var processGroup: any ProcessGroup { SingleProcess.shared }

    /// Replaces the parameters and zeroes the optimizer's buffers.
    public func load(parameters: Parameters) throws { try load(parameters: parameters, optimizerState: OptimizerState()) }

    /// Misclassified samples among `data[range]`.
    public func countErrors(on data: Dataset, range: Range<Int>? = nil, recipe: Recipe) throws -> Int {
        let range = range ?? 0..<data.count
        var predictions = [UInt8](repeating: 0, count: range.count)
        try predictions.withUnsafeMutableBufferPointer { try predict(data, range: range, recipe: recipe, into: $0) }
        var wrong = 0
        for (k, i) in range.enumerated() where predictions[k] != data.labels[i] { wrong += 1 }
        return wrong
    }

    /// Runs one whole epoch of `plan` in one call; for tests and benchmarks.
    @discardableResult
    public func trainEpoch(_ plan: EpochPlan) throws -> TrainingStatistics {
        try beginEpoch(plan, at: 0)
        try train(until: plan.order.count)
        return try statistics()
    }
}

/// A data-parallel engine whose ranks each train only their part of every batch and so need
/// only their shard of the training set (`ShardPlan`). The trainer gives such an engine its
/// shard instead of the whole set when it spans more than one rank.
public protocol ShardedEngine: Engine {
    /// Whether, as configured, each rank trains only its part of every batch.
    var trainsOnShard: Bool { get }

    /// Hands the engine its shard; `EpochPlan.order` then holds global sample indices.
    func prepare(shard: DatasetShard) throws
}
