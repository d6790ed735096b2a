import Foundation
import Testing
import ParallelCNN

/// The independent C port of SPEC.md (Tests/Fixtures/spec_port.c), compiled once with gcc and
/// no FMA contraction. Its hashes are the reference engine's external check.
enum SpecPort {
    static let executable: Result<URL, Error> = Result {
        let source = TestData.packageRoot.appendingPathComponent("Tests/Fixtures/spec_port.c")
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("pcnn-spec-port-\(getpid())")
        let result = try runProcess(
            "gcc",
            [
                "-O2", "-ffp-contract=off", "-fno-fast-math", "-o", output.path,
                source.path, "-lm", "-lz"
            ])
        guard result.status == 0 else { throw PortError(message: "gcc failed: \(result.output)") }
        return output
    }

    struct PortError: Error, CustomStringConvertible { let message: String; var description: String { message } }

    /// Runs the port on the first `samples` training samples; returns its `key value` lines.
    static func train(samples: Int, directory: String) throws -> [String: String] {
        let result = try runProcess(try executable.get().path, [directory, String(samples)])
        guard result.status == 0 else { throw PortError(message: "spec_port failed: \(result.output)") }
        var lines: [String: String] = [:]
        for line in result.output.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count >= 2 { lines[String(parts[0])] = String(parts.last!) }
        }
        return lines
    }
}

/// Trains `engine` on the first `samples` training samples, one epoch, original recipe.
func trainOriginal(_ engine: any Engine, data: DatasetPair, samples: Int) throws -> EpochReport? {
    let subset = DatasetPair(train: data.train.prefix(samples), test: data.test)
    let trainer = Trainer(engine: engine, data: subset, options: TrainingOptions(recipe: .original, epochs: 1))
    var report: EpochReport?
    trainer.onEpoch = { report = $0 }
    try trainer.run()
    return report
}

@Suite("Reference engine: the oracle", .serialized, TestData.mnistTrait)
struct ReferenceTests {
    @Test("init hash equals the independent C port's")
    func initHash() throws {
        let port = try SpecPort.train(samples: 0, directory: try TestData.requireMNISTDirectory())
        #expect(Initialization.original.makeParameters().hashString == port["init"])
    }

    @Test("after 1000 samples: bit-identical to the independent C port")
    func thousandSamples() throws {
        let data = try TestData.mnist()
        let port = try SpecPort.train(samples: 1000, directory: try TestData.requireMNISTDirectory())
        let engine = ReferenceEngine(parameters: Initialization.original.makeParameters())
        let report = try #require(try trainOriginal(engine, data: data, samples: 1000))
        #expect(Parameters.hexString(report.parameterHash) == port["trained"])
    }

    @Test("one full epoch: C port's hash, SPEC's 7.52% and 2.425312e-01; sequential within 0.2 points")
    func fullEpoch() throws {
        let data = try TestData.mnist()
        let port = try SpecPort.train(samples: data.train.count, directory: try TestData.requireMNISTDirectory())
        let reference = try #require(
            try trainOriginal(
                ReferenceEngine(parameters: Initialization.original.makeParameters()), data: data, samples: data.train.count))
        #expect(Parameters.hexString(reference.parameterHash) == port["trained"])
        #expect(reference.testErrors == 752)
        #expect(String(format: "%.6e", reference.meanLoss) == "2.425312e-01")

        let sequential = try #require(
            try trainOriginal(
                SequentialEngine(parameters: Initialization.original.makeParameters()), data: data, samples: data.train.count))
        #expect(abs(sequential.testErrorPercent - reference.testErrorPercent) <= 0.2)
        #expect(abs(sequential.meanLoss - reference.meanLoss) <= 1e-3)
    }
}
