import Foundation
import Testing
import ParallelCNN

/// One engine configuration under contract: an engine of the registry with one of its strategies.
struct ContractEngine: CustomTestStringConvertible, Sendable {
    let kind: EngineKind
    let options: EngineOptions
    var testDescription: String { "\(kind.rawValue)\(options.strategy.map { " \($0.rawValue)" } ?? "")" }

    func make(_ parameters: Parameters) throws -> any Engine {
        try EngineRegistry.makeEngine(kind, options, parameters: parameters)
    }

    /// Every configuration of every engine of this build that runs in a plain process here.
    /// Engines started by a launcher (mpi under mpirun) are held to the same contract by
    /// `MPITests` and the kill-anywhere test, through the command line.
    static let all: [ContractEngine] = EngineRegistry.engines.flatMap { descriptor -> [ContractEngine] in
        guard descriptor.launcher == nil, descriptor.availability().isAvailable else { return [] }
        let strategies: [EngineStrategy?] = descriptor.strategies.isEmpty ? [nil] : descriptor.strategies
        return strategies.map { strategy in
            ContractEngine(
                kind: descriptor.kind,
                options: EngineOptions(threads: descriptor.defaultThreads(strategy) == nil ? nil : 2, strategy: strategy))
        }
    }
}

/// The contract every engine keeps (issue: engine seams): same mathematics as `reference`,
/// statistics that add up, exact resume in the middle of an epoch, thrown errors, and a stop at
/// the first sign of divergence.
@Suite("Engine contract", .serialized, TestData.mnistTrait)
struct EngineContractTests {
    static let start = Initialization.seeded(11).makeParameters()

    static func data(samples: Int = 240) throws -> DatasetPair {
        let data = try TestData.mnist()
        return DatasetPair(train: data.train.prefix(samples), test: data.test.prefix(100))
    }

    @Test("every engine of the registry is under contract")
    func registryIsCovered() {
        let kinds = Set(ContractEngine.all.map(\.kind))
        #expect(kinds.isSuperset(of: [.reference, .sequential, .threads]), "\(kinds)")
    }

    @Test("the same run ends within tolerance of reference, both recipes", arguments: ContractEngine.all)
    func agreesWithReference(engine: ContractEngine) throws {
        let data = try Self.data()
        for options in [
            TrainingOptions(recipe: .original, epochs: 1),
            TrainingOptions(recipe: .modern, epochs: 2, batchSize: 8, seed: 4)
        ] {
            let reference = ReferenceEngine(parameters: Self.start)
            try Trainer(engine: reference, data: data, options: options).run()
            let candidate = try engine.make(Self.start)
            try Trainer(engine: candidate, data: data, options: options).run()
            expectClose(
                try candidate.currentParameters().values, reference.currentParameters().values,
                absolute: 1e-4, relative: 1e-3, "\(engine.testDescription), \(options.recipe)")
        }
    }

    @Test(
        "the statistics of an epoch equal the sum of its steps, however the epoch is cut",
        arguments: ContractEngine.all)
    func statisticsAddUp(engine: ContractEngine) throws {
        let data = try Self.data()
        let plan = EpochPlan(
            order: TrainingOptions(recipe: .modern, seed: 2).sampleOrder(epoch: 0, count: data.train.count),
            batchSize: 16, rule: UpdateRule(recipe: .modern))
        let whole = try engine.make(Self.start)
        try whole.prepare(training: data.train)
        let oneCall = try whole.trainEpoch(plan)

        let stepwise = try engine.make(Self.start)
        try stepwise.prepare(training: data.train)
        try stepwise.beginEpoch(plan, at: 0)
        var summed = TrainingStatistics()
        var position = 0, before = StepStatistics()
        while position < plan.order.count {
            position = plan.stepEnd(after: position)
            try stepwise.train(until: position)
            let now = try stepwise.statistics().total
            summed.add(
                StepStatistics(
                    lossSum: now.lossSum - before.lossSum, misclassified: now.misclassified - before.misclassified,
                    samples: now.samples - before.samples), number: summed.steps)
            before = now
        }
        let final = try stepwise.statistics()
        #expect(oneCall.total.samples == data.train.count)
        #expect(oneCall.steps == (data.train.count + 15) / 16)
        #expect(final.total.samples == summed.total.samples && final.total.misclassified == summed.total.misclassified)
        #expect(abs(final.total.lossSum - summed.total.lossSum) <= 1e-9 * abs(final.total.lossSum))
        #expect(final == oneCall, "statistics depend on how the epoch was cut")
        #expect(try stepwise.currentParameters().hashString == whole.currentParameters().hashString)
    }

    @Test(
        "resuming in the middle of an epoch, in a fresh engine, ends where an uninterrupted run does",
        arguments: ContractEngine.all)
    func resumeMidEpoch(engine: ContractEngine) throws {
        let data = try Self.data()
        let options = TrainingOptions(recipe: .modern, epochs: 2, batchSize: 8, seed: 6, initialization: .seeded(11))
        let uninterrupted = try engine.make(Self.start)
        try Trainer(engine: uninterrupted, data: data, options: options).run()

        let first = try engine.make(Self.start)
        let trainer = Trainer(engine: first, data: data, options: options)
        trainer.progressInterval = 0  // one step per chunk, so the stop lands after step 7
        var polls = 0
        trainer.shouldStop = {
            polls += 1; return polls == 7
        }
        guard case .interrupted(let position) = try trainer.run() else {
            Issue.record("the run was not interrupted")
            return
        }
        #expect(position == TrainingPosition(epoch: 0, position: 56))
        let second = try engine.make(try first.currentParameters())
        try second.load(parameters: try first.currentParameters(), optimizerState: try first.currentOptimizerState())
        try Trainer(engine: second, data: data, options: options, start: position).run()
        #expect(try second.currentParameters().hashString == uninterrupted.currentParameters().hashString)
    }

    @Test(
        "an epoch numbers its steps from its plan's first step (Adam's bias correction)",
        arguments: ContractEngine.all)
    func stepNumbers(engine: ContractEngine) throws {
        let data = try Self.data()
        let order = (0..<Int32(24)).map { $0 }
        var rule = UpdateRule(recipe: .modern, batchSize: 8)
        rule.step = 5
        let whole = try engine.make(Self.start)
        try whole.prepare(training: data.train)
        try whole.trainEpoch(EpochPlan(order: order, batchSize: 8, rule: rule))

        // The same three steps as three plans of one step, numbered 5, 6 and 7 by hand.
        let stepwise = try engine.make(Self.start)
        try stepwise.prepare(training: data.train)
        for k in 0..<3 {
            try stepwise.trainEpoch(
                EpochPlan(
                    order: Array(order[(8 * k)..<(8 * k + 8)]), batchSize: 8,
                    rule: rule.advanced(by: k)))
        }
        #expect(try whole.currentParameters() == stepwise.currentParameters())
        // Numbering every step 5 instead is a different run.
        let unnumbered = try engine.make(Self.start)
        try unnumbered.prepare(training: data.train)
        for k in 0..<3 {
            try unnumbered.trainEpoch(EpochPlan(order: Array(order[(8 * k)..<(8 * k + 8)]), batchSize: 8, rule: rule))
        }
        #expect(try whole.currentParameters() != unnumbered.currentParameters())
    }

    @Test("misuse and bad options arrive as thrown errors", arguments: ContractEngine.all)
    func errorsAreThrown(engine: ContractEngine) throws {
        let data = try Self.data()
        let fresh = try engine.make(Self.start)
        #expect(throws: EngineError.self) { try fresh.train(until: 8) }
        try fresh.prepare(training: data.train)
        let plan = EpochPlan(order: (0..<Int32(data.train.count)).map { $0 }, batchSize: 8, rule: UpdateRule(recipe: .modern))
        #expect(throws: EngineError.self) { try fresh.beginEpoch(plan, at: data.train.count + 1) }
        try fresh.beginEpoch(plan, at: 0)
        #expect(throws: EngineError.self) { try fresh.train(until: 5) }  // not a step boundary
        #expect(throws: EngineError.self) {
            try EngineRegistry.makeEngine(engine.kind, EngineOptions(threads: 100_000), parameters: Self.start)
        }
        #expect(throws: EngineError.self) {
            try EngineRegistry.makeEngine(engine.kind, EngineOptions(device: -1), parameters: Self.start)
        }
    }

    @Test("a diverging run stops with an error naming the epoch and step", arguments: ContractEngine.all)
    func divergenceStops(engine: ContractEngine) throws {
        let data = try Self.data()
        let options = TrainingOptions(recipe: .modern, epochs: 1, batchSize: 8, learningRate: 1e9, seed: 3)
        let diverging = try engine.make(Self.start)
        let trainer = Trainer(engine: diverging, data: data, options: options)
        var epochs = 0, checkpoints = 0
        trainer.onEpoch = { _ in epochs += 1 }
        trainer.onCheckpoint = { _ in checkpoints += 1 }
        trainer.checkpointInterval = 0
        do {
            try trainer.run()
            Issue.record("lr 1e9 trained to the end without an error")
        } catch let error as DivergenceError {
            #expect(error.epoch == 1 && error.step >= 1 && error.step <= 30, "\(error)")
            #expect("\(error)".contains("epoch 1") && "\(error)".contains("step"))
        }
        #expect(epochs == 0, "a diverged epoch was reported as complete")
    }
}
