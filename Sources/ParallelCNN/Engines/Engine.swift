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
        StepStatistics(lossSum: a.lossSum + b.lossSum, misclassified: a.misclassified + b.misclassified,
                       samples: a.samples + b.samples)
    }

    public static func += (a: inout StepStatistics, b: StepStatistics) {
        a.lossSum += b.lossSum
        a.misclassified += b.misclassified
        a.samples += b.samples
    }
}

/// The engines a user can pick with `--engine`.
public enum EngineKind: String, CaseIterable, Sendable {
    case reference, sequential, threads, mpi
}

/// Why an engine cannot be made or cannot go on.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    /// The engine needs an optional system part this build or machine lacks; the text says how to get it.
    case unavailable(engine: String, remedy: String)
    /// A data-parallel rank was handed a sample outside its shard (a sample-order bug).
    case sampleNotInShard(Int)

    public var description: String {
        switch self {
        case .unavailable(let engine, let remedy): "the \(engine) engine is not available: \(remedy)"
        case .sampleNotInShard(let sample): "sample \(sample) is not in this rank's shard"
        }
    }
}

/// One way of running the network. The trainer drives every engine through this protocol
/// only: it hands over parameters, asks for optimizer steps on batches of sample indices and
/// for predictions, and reads the parameters back for hashing and checkpoints.
///
/// An engine owns all its buffers (and, for devices, the device copies of the parameters), so
/// a step allocates nothing. Engines are used from one thread at a time.
public protocol Engine: AnyObject {
    /// The `--engine` name and any options, for reports (for example `threads(T=2, data)`).
    var description: String { get }

    /// Replaces the parameters and the momentum buffer (`nil` means zero velocity).
    func load(parameters: Parameters, velocity: Parameters?)

    /// The current parameters.
    func currentParameters() -> Parameters

    /// The current momentum buffer, or `nil` if the rule has no momentum.
    func currentVelocity() -> Parameters?

    /// One optimizer step over the samples `indices` of `data` (a batch of `indices.count`),
    /// following `rule`.
    func train(on data: Dataset, indices: UnsafeBufferPointer<Int32>, rule: UpdateRule) -> StepStatistics

    /// Predicted classes of the samples `range` of `data`, written to `predictions` (one per sample).
    func predict(_ data: Dataset, range: Range<Int>, recipe: Recipe, into predictions: UnsafeMutableBufferPointer<UInt8>)
}

extension Engine {
    /// Misclassified samples among `data[range]`.
    public func countErrors(on data: Dataset, range: Range<Int>? = nil, recipe: Recipe) -> Int {
        let range = range ?? 0..<data.count
        var predictions = [UInt8](repeating: 0, count: range.count)
        predictions.withUnsafeMutableBufferPointer { predict(data, range: range, recipe: recipe, into: $0) }
        var wrong = 0
        for (k, i) in range.enumerated() where predictions[k] != data.labels[i] { wrong += 1 }
        return wrong
    }
}
