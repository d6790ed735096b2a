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
