import Foundation
import Testing
import ParallelCNN

/// The library's training session: what `pcnn train` does, in a few calls from Swift.
@Suite("Training session", .serialized, TestData.mnistTrait)
struct TrainingSessionTests {
    static func request(_ checkpoint: String?, engine: EngineKind = .sequential) -> TrainingRequest {
        var request = TrainingRequest(engine: engine, epochs: 2, recipe: .modern, checkpoint: checkpoint)
        request.limit = 600
        request.batchSize = 8
        request.initialization = .seeded(5)
        request.seed = 5
        return request
    }

    @Test("threads and mpi split batches by default, and each layer at batch 1, where a batch has nothing to split")
    func defaultStrategy() throws {
        for (batch, strategy) in [(1, "layer"), (8, "data")] {
            var request = Self.request(nil, engine: .threads)
            request.batchSize = batch
            request.engineOptions = EngineOptions(threads: 2)
            let session = try TrainingSession(request) { try TestData.mnist() }
            #expect(session.engine.description.contains(strategy), "batch \(batch): \(session.engine.description)")
        }
        #expect(try EngineRegistry.descriptor(.mpi).defaultStrategy(batchSize: 1) == .layer)
        #expect(try EngineRegistry.descriptor(.mpi).defaultStrategy(batchSize: 2) == .data)
        #expect(try EngineRegistry.descriptor(.opencl).defaultStrategy(batchSize: 1) == .fused)
    }

    @Test("stopped mid-epoch, then resumed from its checkpoint, a session ends where an uninterrupted one does")
    func stopAndResume() throws {
        try TestData.withTemporaryDirectory { dir in
            let whole = try TrainingSession(Self.request(nil)) { try TestData.mnist() }.run()
            #expect(whole.outcome == .finished && whole.epochs.count == 2)

            let path = dir.appendingPathComponent("run.safetensors").path
            let first = try TrainingSession(Self.request(path)) { try TestData.mnist() }
            first.progressInterval = 0
            var polls = 0
            first.stopRequested = {
                polls += 1; return polls == 100
            }
            let stopped = try first.run()
            #expect(stopped.outcome == .interrupted(TrainingPosition(epoch: 1, position: 200)))
            #expect(stopped.checkpoint == path)

            var again = Self.request(path, engine: .threads)
            again.resume = path
            again.engineOptions = EngineOptions(threads: 2, strategy: .data)
            let resumed = try TrainingSession(again) { try TestData.mnist() }
            #expect(resumed.record.position == TrainingPosition(epoch: 1, position: 200))
            let result = try resumed.run()
            #expect(result.finalHash == whole.finalHash)
            #expect(result.jsonObject["param_hash"] as? String == whole.finalHash)
        }
    }

    @Test("a resumed run refuses options that contradict its checkpoint")
    func conflictingResume() throws {
        try TestData.withTemporaryDirectory { dir in
            let path = dir.appendingPathComponent("run.safetensors").path
            var one = Self.request(path)
            one.epochs = 1
            _ = try TrainingSession(one) { try TestData.mnist() }.run()
            var conflicting = Self.request(path)
            conflicting.resume = path
            conflicting.batchSize = 16
            #expect(throws: TrainingRequestError.self) { try TrainingSession(conflicting) { try TestData.mnist() } }
            var otherOptimizer = Self.request(path)
            otherOptimizer.resume = path
            otherOptimizer.optimizer = .sgd  // the modern recipe ran with Adam
            #expect(throws: TrainingRequestError.self) { try TrainingSession(otherOptimizer) { try TestData.mnist() } }
        }
    }

    @Test("divergence stops the run and never replaces the last good checkpoint")
    func divergenceKeepsGoodCheckpoint() throws {
        try TestData.withTemporaryDirectory { dir in
            let path = dir.appendingPathComponent("run.safetensors").path
            var good = Self.request(path)
            good.epochs = 1
            _ = try TrainingSession(good) { try TestData.mnist() }.run()
            let before = try Data(contentsOf: URL(fileURLWithPath: path))

            var diverging = Self.request(path)
            diverging.learningRate = 1e9
            let session = try TrainingSession(diverging) { try TestData.mnist() }
            session.progressInterval = 0
            #expect(throws: DivergenceError.self) { try session.run() }
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        }
    }
}
