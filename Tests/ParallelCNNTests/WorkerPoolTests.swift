import Foundation
import Testing
import ParallelCNN

/// The worker pool's life cycle through the threads engine, on synthetic data (no MNIST): pools
/// created and destroyed repeatedly, jobs that follow each other within microseconds (workers
/// spinning) and after pauses (workers parked on the condition variable), more threads than
/// cores. Meant above all for ThreadSanitizer (`scripts/sanitize`), but every round also checks
/// its result against the sequential engine, so a lost or doubled job fails here too.
@Suite("Worker pool life cycle", .serialized)
struct WorkerPoolTests {
    /// 64 samples of reproducible noise with labels 0...9.
    static let data: Dataset = {
        var state: UInt32 = 12345
        let pixels = (0..<64 * Network.imagePixels).map { _ -> Float in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(state >> 24) / 255
        }
        return Dataset(name: "noise", images: pixels, labels: (0..<64).map { UInt8($0 % 10) })
    }()

    static let start = Initialization.original.makeParameters()

    /// Trains `engine` on `data` in batches of 8, pausing `pause` microseconds between batches;
    /// returns the parameter hash.
    static func train(_ engine: any Engine, pause: UInt32) throws -> String {
        let plan = EpochPlan(order: (0..<Int32(data.count)).map { $0 }, batchSize: 8, rule: UpdateRule(recipe: .modern))
        try engine.prepare(training: data)
        try engine.beginEpoch(plan, at: 0)
        for end in stride(from: 8, through: data.count, by: 8) {
            try engine.train(until: end)
            if pause > 0 { usleep(pause) }
        }
        return try engine.currentParameters().hashString
    }

    static func predictions(_ engine: any Engine) throws -> [UInt8] {
        var predictions = [UInt8](repeating: 0, count: data.count)
        try predictions.withUnsafeMutableBufferPointer {
            try engine.predict(data, range: 0..<data.count, recipe: .modern, into: $0)
        }
        return predictions
    }

    @Test(
        "fresh pools, back-to-back and paused jobs, T = 2, 3, 5: same parameters as sequential",
        arguments: [EngineStrategy.layer, .data])
    func lifeCycle(strategy: EngineStrategy) throws {
        let sequential = SequentialEngine(parameters: Self.start)
        let expected = try Self.train(sequential, pause: 0)
        let expectedPredictions = try Self.predictions(sequential)
        for round in 0..<6 {
            for threads in [2, 3, 5] {
                // Every other round waits long enough (2 ms) for the workers to park.
                let pause: UInt32 = round % 2 == 0 ? 0 : 2_000
                let engine = ThreadedEngine(parameters: Self.start, threads: threads, strategy: strategy)
                #expect(try Self.train(engine, pause: pause) == expected, "round \(round), T = \(threads)")
                #expect(try Self.predictions(engine) == expectedPredictions, "round \(round), T = \(threads)")
            }
        }
    }
}
