/// The bookkeeping of an engine that runs its steps from this process, one call per step: the
/// training set, the epoch's plan, the position in it and the statistics so far.
public final class EpochStepper {
    var data: Dataset?
    var plan: EpochPlan?
    var position = 0
    var statistics = TrainingStatistics()

    public init() {}
}

/// An engine whose steps run in this process (every CPU engine). It implements one optimizer
/// step; this protocol's extension walks an epoch's plan with it and keeps the statistics.
public protocol SteppedEngine: Engine {
    var stepper: EpochStepper { get }

    /// One optimizer step over the samples `indices` of `data` (a batch of `indices.count`),
    /// following `rule`.
    func trainStep(_ indices: UnsafeBufferPointer<Int32>, of data: Dataset, rule: UpdateRule) throws -> StepStatistics
}

extension SteppedEngine {
    public func prepare(training data: Dataset) throws { stepper.data = data }

    public func beginEpoch(_ plan: EpochPlan, at position: Int) throws {
        guard stepper.data != nil else { throw EngineError.misuse("beginEpoch before prepare(training:)") }
        guard (0...plan.order.count).contains(position) else {
            throw EngineError.misuse("epoch position \(position) outside 0...\(plan.order.count)")
        }
        stepper.plan = plan
        stepper.position = position
        stepper.statistics = TrainingStatistics()
    }

    public func train(until end: Int) throws {
        guard let plan = stepper.plan, let data = stepper.data else {
            throw EngineError.misuse("train(until:) before prepare(training:) and beginEpoch")
        }
        guard end >= stepper.position, end <= plan.order.count,
            end == plan.order.count || end % plan.batchSize == 0
        else {
            throw EngineError.misuse(
                "train(until: \(end)) from position \(stepper.position): not a step boundary of \(plan.order.count) samples in steps of \(plan.batchSize)"
            )
        }
        try plan.order.withUnsafeBufferPointer { order in
            var position = stepper.position
            while position < end {
                let stepEnd = plan.stepEnd(after: position)
                let step = try trainStep(
                    UnsafeBufferPointer(rebasing: order[position..<stepEnd]), of: data,
                    rule: plan.rule(at: position))
                stepper.statistics.add(step, number: position / plan.batchSize)
                position = stepEnd
                stepper.position = position
            }
        }
    }

    public func statistics() throws -> TrainingStatistics { stepper.statistics }

    /// Steps finish before `train(until:)` returns.
    public func synchronize() throws {}
}

/// A stepped engine that keeps its parameters in a `ParameterState` (sequential, threads, mpi).
public protocol ParameterStateEngine: SteppedEngine {
    var state: ParameterState { get }
}

extension ParameterStateEngine {
    public func load(parameters: Parameters, optimizerState: OptimizerState) throws {
        state.load(parameters: parameters, optimizerState: optimizerState)
    }
    public func currentParameters() throws -> Parameters { state.parameters }
    public func currentOptimizerState() throws -> OptimizerState { state.optimizerState }
}
