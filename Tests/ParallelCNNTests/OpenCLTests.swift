import Foundation
import Testing
import ParallelCNN

/// Whether the device tests run: an OpenCL device must be present, or `PCNN_REQUIRE_OPENCL=1`
/// turns its absence into failures (CI installs PoCL and sets it, so it cannot pass by skipping).
enum DeviceTestSupport {
    static let openCLRequired = ProcessInfo.processInfo.environment["PCNN_REQUIRE_OPENCL"] == "1"
    static let openCL = DeviceBackend.opencl.availability()
    static let openCLTrait: ConditionTrait = .enabled(
        if: openCL.isAvailable || openCLRequired,
        "no OpenCL device (\(openCL.remedy ?? "")); PCNN_REQUIRE_OPENCL=1 fails instead")

    /// A fresh engine on OpenCL device 0 holding `parameters`, with `train` prepared.
    static func openCLEngine(_ strategy: EngineStrategy, parameters: Parameters, train: Dataset) throws -> DeviceEngine {
        let engine = try DeviceEngine(backend: .opencl, strategy: strategy, parameters: parameters)
        try engine.prepare(training: train)
        return engine
    }
}

/// Drives a device engine through one epoch of `order` in the given steps, as a session does.
@discardableResult
func trainEpoch(_ engine: DeviceEngine, order: [Int32], batch: Int, rule: UpdateRule, callsOf samples: Int = 1000) throws
    -> TrainingStatistics
{
    try engine.beginEpoch(order: order, batchSize: batch, rule: rule, at: 0)
    var position = 0
    while position < order.count {
        // Several host calls per epoch, each on a step boundary.
        position = min(position + max(1, samples / batch) * batch, order.count)
        try engine.train(until: position)
    }
    return try engine.statistics()
}

/// Trains the reference engine over `order` in batches; returns its statistics.
func trainReference(_ engine: ReferenceEngine, data: Dataset, order: [Int32], batch: Int, rule: UpdateRule) throws -> TrainingStatistics {
    try engine.prepare(training: data)
    return try engine.trainEpoch(EpochPlan(order: order, batchSize: batch, rule: rule))
}

@Suite("OpenCL engine", .serialized, TestData.mnistTrait, DeviceTestSupport.openCLTrait)
struct OpenCLTests {
    static let start = Initialization.original.makeParameters()

    /// (strategy, recipe, optimizer, batch, momentum): per-sample SGD, momentum SGD and Adam
    /// minibatches, both recipes.
    static let cases: [(EngineStrategy, Recipe, Optimizer, Int, Float?)] = [
        (.fused, .original, .sgd, 1, nil), (.fused, .modern, .sgd, 1, 0), (.fused, .original, .sgd, 16, nil),
        (.fused, .modern, .sgd, 32, 0.9), (.fused, .modern, .adam, 7, nil), (.fused, .modern, .adam, 1, nil),
        (.fused, .original, .adam, 16, nil), (.layer, .original, .sgd, 1, nil), (.layer, .modern, .sgd, 1, 0),
        (.layer, .original, .sgd, 16, nil), (.layer, .modern, .sgd, 32, 0.9), (.layer, .modern, .adam, 32, nil)
    ]

    @Test("agrees with the reference engine within tolerance on 2000 samples, statistics included", arguments: cases)
    func agreesWithReference(strategy: EngineStrategy, recipe: Recipe, optimizer: Optimizer, batch: Int, momentum: Float?) throws {
        let data = try TestData.mnist()
        let train = data.train.prefix(2000)
        let options = TrainingOptions(recipe: recipe, optimizer: optimizer, batchSize: batch, momentum: momentum, seed: 5)
        let order = options.sampleOrder(epoch: 0, count: train.count)

        let reference = ReferenceEngine(parameters: Self.start)
        let expected = try trainReference(reference, data: train, order: order, batch: batch, rule: options.rule)

        let engine = try DeviceTestSupport.openCLEngine(strategy, parameters: Self.start, train: train)
        let stats = try trainEpoch(engine, order: order, batch: batch, rule: options.rule)
        let what = "\(strategy) \(recipe) \(optimizer) B=\(batch)"
        expectClose(try engine.currentParameters().values, reference.currentParameters().values, absolute: 1e-4, relative: 1e-3, what)
        let state = try engine.currentOptimizerState(), expectedState = reference.currentOptimizerState()
        for (name, buffer, expectedBuffer) in [
            ("velocity", state.velocity, expectedState.velocity),
            ("second moment", state.secondMoment, expectedState.secondMoment)
        ] {
            if let expectedBuffer {
                let buffer = try #require(buffer, "\(what): \(name)")
                expectClose(buffer.values, expectedBuffer.values, absolute: 1e-4, relative: 1e-3, "\(what) \(name)")
            } else {
                #expect(buffer == nil, "\(what): \(name)")
            }
        }
        #expect(stats.total.samples == 2000 && stats.steps == expected.steps)
        #expect(
            abs(stats.total.lossSum - expected.total.lossSum) <= 1e-4 * expected.total.lossSum,
            "\(what): loss \(stats.total.lossSum) vs \(expected.total.lossSum)")
        #expect(abs(stats.floatLossSum - expected.floatLossSum) <= 1e-4 * expected.floatLossSum)
        #expect(
            abs(stats.total.misclassified - expected.total.misclassified) <= 2,
            "\(what): \(stats.total.misclassified) vs \(expected.total.misclassified)")

        // Predictions from the trained parameters: the same classes as the reference's.
        let test = data.test.prefix(1000)
        reference.load(parameters: try engine.currentParameters())
        #expect(try engine.countErrors(on: test, recipe: recipe) == (try reference.countErrors(on: test, recipe: recipe)))
    }

    @Test("two runs give the same parameter hash", arguments: cases)
    func reproducible(strategy: EngineStrategy, recipe: Recipe, optimizer: Optimizer, batch: Int, momentum: Float?) throws {
        let data = try TestData.mnist()
        let train = data.train.prefix(1500)
        let options = TrainingOptions(recipe: recipe, optimizer: optimizer, batchSize: batch, momentum: momentum, seed: 9)
        let order = options.sampleOrder(epoch: 0, count: train.count)
        var hashes: [String] = []
        for calls in [1500, 96] {  // different host-call splits must not matter either
            let engine = try DeviceTestSupport.openCLEngine(strategy, parameters: Self.start, train: train)
            try trainEpoch(engine, order: order, batch: batch, rule: options.rule, callsOf: calls)
            hashes.append(try engine.currentParameters().hashString)
        }
        #expect(hashes[0] == hashes[1])
        #expect(hashes[0] != Self.start.hashString)
    }

    @Test(
        "layer and fused compute the same sums in the same order: bit-identical on one device",
        arguments: [(Recipe.original, Optimizer.sgd, 1), (.modern, .sgd, 16), (.modern, .adam, 16)])
    func layerEqualsFused(recipe: Recipe, optimizer: Optimizer, batch: Int) throws {
        let data = try TestData.mnist()
        let train = data.train.prefix(400)
        let options = TrainingOptions(recipe: recipe, optimizer: optimizer, batchSize: batch, seed: 4)
        let order = options.sampleOrder(epoch: 0, count: train.count)
        var results: [(Parameters, TrainingStatistics)] = []
        for strategy in [EngineStrategy.fused, .layer] {
            let engine = try DeviceTestSupport.openCLEngine(strategy, parameters: Self.start, train: train)
            let stats = try trainEpoch(engine, order: order, batch: batch, rule: options.rule)
            results.append((try engine.currentParameters(), stats))
        }
        #expect(results[0].0.hashString == results[1].0.hashString)
        #expect(results[0].1 == results[1].1)
    }

    @Test("resuming mid-epoch from read-back parameters continues the same run")
    func resume() throws {
        let data = try TestData.mnist()
        let train = data.train.prefix(600)
        let options = TrainingOptions(recipe: .modern, batchSize: 8, seed: 2)
        let order = options.sampleOrder(epoch: 0, count: train.count)
        let whole = try DeviceTestSupport.openCLEngine(.fused, parameters: Self.start, train: train)
        try trainEpoch(whole, order: order, batch: 8, rule: options.rule)

        let first = try DeviceTestSupport.openCLEngine(.fused, parameters: Self.start, train: train)
        try first.beginEpoch(order: order, batchSize: 8, rule: options.rule, at: 0)
        try first.train(until: 320)
        let second = try DeviceTestSupport.openCLEngine(.fused, parameters: try first.currentParameters(), train: train)
        try second.load(parameters: try first.currentParameters(), optimizerState: try first.currentOptimizerState())
        try second.beginEpoch(order: order, batchSize: 8, rule: options.rule, at: 320)
        try second.train(until: order.count)
        #expect(try second.currentParameters() == whole.currentParameters())
        #expect(try second.statistics().total.samples == 280)
    }

    @Test("engine misuse is a typed error, not a crash")
    func misuse() throws {
        let engine = try DeviceEngine(backend: .opencl, strategy: .fused, parameters: Self.start)
        #expect(throws: EngineError.self) { try engine.beginEpoch(order: [0], batchSize: 1, rule: UpdateRule(recipe: .original), at: 0) }
        try engine.prepare(training: try TestData.mnist().train.prefix(10))
        #expect(throws: EngineError.self) { try engine.beginEpoch(order: [10], batchSize: 1, rule: UpdateRule(recipe: .original), at: 0) }
        try engine.beginEpoch(order: [0, 1, 2, 3], batchSize: 2, rule: UpdateRule(recipe: .modern), at: 0)
        #expect(throws: EngineError.self) { try engine.train(until: 3) }
    }

    @Test("a kernel that does not compile reports the compiler's log")
    func compileError() throws {
        let device = try DeviceBackend.opencl.open()
        let error = try #require(throws: DeviceError.self) {
            try device.compile(source: "__kernel void broken(__global float* x) { x[0] = undefined_name; }", defines: [:])
        }
        guard case .compilation(_, let log) = error else { Issue.record("expected a compilation error, got \(error)"); return }
        #expect(log.contains("undefined_name"))
    }
}

@Suite("OpenCL engine: one full epoch", .serialized, TestData.mnistTrait, DeviceTestSupport.openCLTrait)
struct OpenCLEpochTests {
    @Test("fused, original recipe and init: SPEC's 7.52% within 0.2 points, mean error 2.425e-01 within 1e-3")
    func fullEpoch() throws {
        let data = try TestData.mnist()
        let options = TrainingOptions(recipe: .original)
        let engine = try DeviceTestSupport.openCLEngine(.fused, parameters: Initialization.original.makeParameters(), train: data.train)
        let started = Trainer.now()
        let stats = try trainEpoch(
            engine, order: options.sampleOrder(epoch: 0, count: data.train.count), batch: 1,
            rule: options.rule, callsOf: 10_000)
        let seconds = Trainer.now() - started
        let errors = try engine.countErrors(on: data.test, recipe: .original)
        let percent = 100 * Double(errors) / Double(data.test.count)
        let meanError = Double(stats.floatLossSum / Float(stats.total.samples))
        print(
            "opencl fused epoch: \(String(format: "%.2f", seconds)) s on \(engine.description), test error \(percent)% "
                + "(\(errors)/10000), mean training error \(String(format: "%.6e", meanError)), hash \(try engine.currentParameters().hashString)"
        )
        #expect(abs(percent - 7.52) <= 0.2)
        #expect(abs(meanError - 0.2425312) <= 1e-3)
        #expect(stats.total.samples == 60_000 && stats.steps == 60_000)
    }
}

@Suite("pcnn --engine opencl", .serialized, TestData.mnistTrait, DeviceTestSupport.openCLTrait)
struct OpenCLCommandLineTests {
    static func hash(_ output: String) -> String? {
        output.split(separator: "\"param_hash\":\"").last.map { String($0.prefix(16)) }
    }

    @Test("train, checkpoint, resume and test on the device, both strategies", arguments: [EngineStrategy.fused, .layer])
    func trainResumeTest(strategy: EngineStrategy) throws {
        let data = try TestData.requireMNISTDirectory()
        try TestData.withTemporaryDirectory { dir in
            let model = dir.appendingPathComponent("m.safetensors").path
            let common = ["--data", data, "--engine", "opencl", "--strategy", strategy.rawValue, "--json"]
            let first = try CLI.run(
                [
                    "train", "--recipe", "modern", "--epochs", "1", "--limit", "1500", "--batch", "8",
                    "--save", model
                ] + common)
            #expect(first.status == 0, "\(first.output)")
            let resumed = try CLI.run(["train", "--resume", model, "--epochs", "2", "--save", model] + common)
            let straight = try CLI.run(
                [
                    "train", "--recipe", "modern", "--epochs", "2", "--limit", "1500", "--batch", "8",
                    "--no-save"
                ] + common)
            #expect(resumed.status == 0 && straight.status == 0, "\(resumed.output)\n\(straight.output)")
            let hash = try #require(Self.hash(resumed.output))
            #expect(hash == Self.hash(straight.output))

            // The device's test error is the CPU's on the same checkpoint.
            let onDevice = try CLI.run(["test", "--model", model] + common)
            let onCPU = try CLI.run(["test", "--data", data, "--model", model, "--json"])
            #expect(onDevice.status == 0 && onCPU.status == 0, "\(onDevice.output)\n\(onCPU.output)")
            #expect(onDevice.output.contains("\"param_hash\":\"\(hash)\""))
            let errorOf = { (s: String) in s.split(separator: "\"test_errors\":").last.map { String($0.prefix { $0.isNumber }) } }
            #expect(
                errorOf(onDevice.output) != nil && errorOf(onDevice.output) == errorOf(onCPU.output), "\(onDevice.output)\n\(onCPU.output)")
        }
    }

    @Test("pcnn bench device: per-layer device times for layer, one persistent launch for fused")
    func bench() throws {
        let data = try TestData.requireMNISTDirectory()
        let result = try CLI.run(["bench", "device", "--data", data, "--samples", "64", "--batch", "1", "16", "--json"])
        #expect(result.status == 0, "\(result.output)")
        let line = try #require(result.output.split(separator: "\n").first { $0.hasPrefix("{") })
        let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let rows = try #require(report["rows"] as? [[String: Any]])
        #expect(rows.count == 4)
        for row in rows {
            let layers = try #require(row["layer_seconds_per_epoch"] as? [String: Double])
            let launches = try #require(row["launches_per_epoch"] as? Double)
            let batch = try #require(row["batch"] as? Int)
            #expect((row["seconds_per_epoch"] as? Double ?? 0) > 0)
            #expect(layers.values.allSatisfy { $0 > 0 })
            if row["strategy"] as? String == "layer" {
                #expect(Set(layers.keys).isSuperset(of: ["conv (c1)", "pooling (s1)", "fc (f)"]))
                #expect(launches >= 8 * 60_000)
            } else {
                #expect(layers.keys.contains("fused (all layers)"))
                // 64 samples: one launch per chunk (batch 1) or two per step of 16, scaled to 60,000 samples.
                #expect(launches == Double(batch == 1 ? 1 : 2 * 4) * 60_000 / 64)
            }
        }
    }
}
