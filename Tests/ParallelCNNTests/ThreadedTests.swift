import Testing
import ParallelCNN

@Suite("Threaded engine", .serialized, TestData.mnistTrait)
struct ThreadedTests {
    /// Final parameters after training `engine` on 300 samples (1 epoch).
    func train(_ engine: any Engine, recipe: Recipe, batch: Int) throws -> Parameters {
        let data = try TestData.mnist()
        let subset = DatasetPair(train: data.train.prefix(300), test: data.test.prefix(200))
        try Trainer(engine: engine, data: subset, options: TrainingOptions(recipe: recipe, epochs: 1, batchSize: batch, seed: 3)).run()
        return try engine.currentParameters()
    }

    static let start = Initialization.original.makeParameters()

    @Test("layer strategy is bit-identical to sequential for T = 1...4", arguments: [(Recipe.original, 1), (.modern, 1), (.modern, 8)])
    func layerIsBitIdentical(recipe: Recipe, batch: Int) throws {
        let expected = try train(SequentialEngine(parameters: Self.start), recipe: recipe, batch: batch).hashString
        for threads in 1...4 {
            let engine = ThreadedEngine(parameters: Self.start, threads: threads, strategy: .layer)
            #expect(try train(engine, recipe: recipe, batch: batch).hashString == expected, "T = \(threads)")
        }
    }

    @Test(
        "data strategy gives the same parameters for T = 1...4, equal to sequential with the same batch",
        arguments: [(Recipe.original, 16), (.modern, 32), (.modern, 7)])
    func dataIsIndependentOfThreads(recipe: Recipe, batch: Int) throws {
        let expected = try train(SequentialEngine(parameters: Self.start), recipe: recipe, batch: batch).hashString
        for threads in 1...4 {
            let engine = ThreadedEngine(parameters: Self.start, threads: threads, strategy: .data)
            #expect(try train(engine, recipe: recipe, batch: batch).hashString == expected, "T = \(threads)")
        }
    }

    @Test("both strategies agree with the reference engine within tolerance", arguments: [EngineStrategy.layer, .data])
    func agreesWithReference(strategy: EngineStrategy) throws {
        let reference = try train(ReferenceEngine(parameters: Self.start), recipe: .modern, batch: 8)
        let threaded = try train(ThreadedEngine(parameters: Self.start, threads: 2, strategy: strategy), recipe: .modern, batch: 8)
        expectClose(threaded.values, reference.values, absolute: 1e-4, relative: 1e-3, "\(strategy) vs reference")
    }

    @Test("predictions equal the sequential engine's", arguments: [EngineStrategy.layer, .data])
    func predictions(strategy: EngineStrategy) throws {
        let data = try TestData.mnist()
        let sequential = SequentialEngine(parameters: Self.start)
        let threaded = ThreadedEngine(parameters: Self.start, threads: 3, strategy: strategy)
        #expect(
            try threaded.countErrors(on: data.test, range: 0..<500, recipe: .original)
                == (try sequential.countErrors(on: data.test, range: 0..<500, recipe: .original)))
    }
}

@Suite("Threads: what the layer strategy splits, and the sliced update")
struct ThreadsSplittingTests {
    @Test("a pass runs on one thread and split in turn, each timed, then the faster way for good")
    func splitChoice() {
        func choose(serial: Double, split: Double) -> (trials: [Bool], after: Bool) {
            var choice = PassSplitChoice(), trials: [Bool] = []
            while !choice.decided {
                trials.append(choice.splits)
                // Blocks of 4 samples: the times per sample are what is compared.
                choice.record(seconds: 4 * (choice.splits ? split : serial), samples: 4)
            }
            // Records after the decision change nothing.
            choice.record(seconds: 0, samples: 1)
            return (trials, choice.splits)
        }
        let trials = PassSplitChoice.trials
        let slowSplit = choose(serial: 2e-6, split: 5e-6), fastSplit = choose(serial: 9e-6, split: 5e-6)
        #expect(slowSplit.trials == (0..<(2 * trials)).map { $0 % 2 == 1 })
        #expect(!slowSplit.after)
        #expect(fastSplit.after)

        // A decision holds for `decisionRuns` runs, then both ways are timed again.
        var choice = PassSplitChoice()
        for k in 0..<(2 * trials) { choice.record(seconds: k % 2 == 1 ? 1e-6 : 9e-6, samples: 1) }
        #expect(choice.decided && choice.splits)
        for _ in 0..<(PassSplitChoice.decisionRuns - 1) { choice.record(seconds: 0, samples: 1) }
        #expect(choice.decided && choice.splits)
        choice.record(seconds: 0, samples: 1)
        #expect(!choice.decided && !choice.splits)
    }

    @Test("a pool's threads update slices of the parameters exactly as one thread does", arguments: Optimizer.allCases)
    func slicedUpdate(optimizer: Optimizer) throws {
        let architecture = try Architecture(NetworkDescription.named("lenet5"), input: .mnist)
        #expect(architecture.parameterCount >= ParameterState.slicedUpdateFloats)
        let start = Initialization.seeded(3).makeParameters(for: architecture)
        let one = ParameterState(start, architecture: architecture), sliced = ParameterState(start, architecture: architecture)
        let pool = WorkerPool(size: 3)
        var state: UInt32 = 7
        var gradient = (0..<ParameterState.paddedCount(architecture.parameterCount)).map { _ -> Float in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(Int32(bitPattern: state)) / Float(Int32.max)
        }
        var rule = UpdateRule(recipe: .modern, optimizer: optimizer, learningRate: 0.01, momentum: 0.9, batchSize: 8)
        for step in 1...3 {
            rule.step = step
            gradient.withUnsafeBufferPointer {
                one.apply(gradientSum: $0.baseAddress!, batchSize: 8, rule: rule)
                sliced.apply(gradientSum: $0.baseAddress!, batchSize: 8, rule: rule, on: pool)
            }
            gradient = gradient.map { -0.5 * $0 }
        }
        #expect(one.parameters.values != start.values)
        #expect(sliced.parameters.values == one.parameters.values)
    }
}
