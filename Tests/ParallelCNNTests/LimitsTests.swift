import Foundation
import Testing
import ParallelCNN

/// Absurd requests are refused with a message before anything is loaded or allocated.
@Suite("Resource limits")
struct LimitsTests {
    @Test(
        "absurd thread, batch, device and rank values are refused by the command line",
        arguments: [
            (["train", "--engine", "threads", "--threads", "1000000"], "--threads must be between 1 and 256"),
            (["train", "--batch", "999999999"], "--batch must be between 1 and 60000"),
            (["train", "--engine", "sequential", "--device", "5"], "--device does not apply"),
            (["test", "--model", "none.safetensors", "--engine", "threads", "--threads", "0"], "--threads must be between 1 and 256"),
            (["bench", "mpi", "--ranks", "100000"], "--ranks values must be between 1 and 64")
        ])
    func refused(arguments: [String], message: String) throws {
        let run = try CLI.run(arguments)
        #expect(run.status != 0)
        #expect(run.output.contains(message), "\(run.output)")
    }

    @Test("a request larger than the free memory is refused with the sizes, not killed")
    func memory() throws {
        let available = try #require(MemoryBudget.availableBytes, "this system does not report its free memory")
        #expect(throws: MemoryBudgetError.self) { try MemoryBudget.require(available * 4, for: "a test request") }
        do {
            try MemoryBudget.require(available * 4, for: "a test request")
        } catch {
            #expect(error.description.contains("a test request needs about"))
        }
        try MemoryBudget.require(1 << 20, for: "one mebibyte")
    }

    @Test("the library refuses a bad request before loading data")
    func sessionValidates() throws {
        var request = TrainingRequest(engine: .threads, engineOptions: EngineOptions(threads: 4096))
        var loads = 0
        #expect(throws: EngineError.self) {
            try TrainingSession(request) {
                loads += 1; return try TestData.mnist()
            }
        }
        request = TrainingRequest()
        request.batchSize = 0
        #expect(throws: TrainingRequestError.self) {
            try TrainingSession(request) {
                loads += 1; return try TestData.mnist()
            }
        }
        #expect(loads == 0)
    }
}
