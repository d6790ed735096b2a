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
    static func train(_ engine: any Engine, pause: UInt32) -> String {
        let rule = UpdateRule(recipe: .modern)
        let indices = (0..<Int32(data.count)).map { $0 }
        indices.withUnsafeBufferPointer { all in
            for start in stride(from: 0, to: all.count, by: 8) {
                _ = engine.train(on: data, indices: UnsafeBufferPointer(rebasing: all[start..<start + 8]), rule: rule)
                if pause > 0 { usleep(pause) }
            }
        }
        return engine.currentParameters().hashString
    }

    static func predictions(_ engine: any Engine) -> [UInt8] {
        var predictions = [UInt8](repeating: 0, count: data.count)
        predictions.withUnsafeMutableBufferPointer {
            engine.predict(data, range: 0..<data.count, recipe: .modern, into: $0)
        }
        return predictions
    }

    @Test("fresh pools, back-to-back and paused jobs, T = 2, 3, 5: same parameters as sequential",
          arguments: ThreadStrategy.allCases)
    func lifeCycle(strategy: ThreadStrategy) {
        let sequential = SequentialEngine(parameters: Self.start)
        let expected = Self.train(sequential, pause: 0)
        let expectedPredictions = Self.predictions(sequential)
        for round in 0..<6 {
            for threads in [2, 3, 5] {
                // Every other round waits long enough (2 ms) for the workers to park.
                let pause: UInt32 = round % 2 == 0 ? 0 : 2_000
                let engine = ThreadedEngine(parameters: Self.start, threads: threads, strategy: strategy)
                #expect(Self.train(engine, pause: pause) == expected, "round \(round), T = \(threads)")
                #expect(Self.predictions(engine) == expectedPredictions, "round \(round), T = \(threads)")
            }
        }
    }
}
