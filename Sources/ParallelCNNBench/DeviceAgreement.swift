import ParallelCNN

/// The GPU tests' agreement checks as a library call, so that a machine with a GPU but no Swift
/// toolchain runs them through the `pcnn` binary (`pcnn devices --verify cuda`, `scripts/gpu-check`):
/// for `paper`, `lenet5` and a small random network, every device strategy trains the same
/// samples as the reference engine's plain layers, and must agree with them within a tolerance
/// and give the same parameter hash on a second run.
public enum DeviceAgreement {
    public struct Check: Sendable {
        public var network: String
        public var strategy: EngineStrategy
        /// The largest parameter difference from the reference, and how many parameters are
        /// outside `|a - b| <= 5e-5 + 1e-3 |b|`.
        public var largestDifference: Float
        public var outside: Int
        public var parameters: Int
        public var hashes: [String]
        public var passed: Bool {
            outside <= parameters / 1000 && largestDifference <= 1e-3 && hashes.count == 2 && hashes[0] == hashes[1]
        }
    }

    /// The networks checked: the paper's, LeNet-5 and a fixed small network with padding, stride,
    /// both poolings and tanh.
    public static func networks(input: ImageShape) throws -> [(name: String, architecture: Architecture)] {
        [
            ("paper", try Architecture(.paper, input: input)), ("lenet5", try Architecture(.named("lenet5"), input: input)),
            (
                "small",
                try Architecture(
                    .named("conv 4 3x3 stride=2 pad=1 tanh; avgpool 2x2 stride=1; conv 6 3x3 relu; maxpool 2x2; dense 10"), input: input)
            )
        ]
    }

    /// Trains each network for one pass over `samples` samples of `data` (modern recipe, Adam,
    /// batch 32) on the reference and on every strategy of `backend`, twice.
    public static func run(
        backend: DeviceBackend, data: Dataset, samples: Int = 512, progress: (String) -> Void = { _ in }
    ) throws -> [Check] {
        let count = min(samples, data.count)
        let subset = data.prefix(count)
        let order = (0..<count).map { Int32(($0 * 37) % count) }
        var checks: [Check] = []
        for (name, architecture) in try networks(input: data.shape) {
            let start = Initialization.seeded(2).makeParameters(for: architecture)
            var rule = UpdateRule(recipe: .modern, optimizer: .adam, batchSize: 32)
            rule.learningRate = 0.01
            let plan = EpochPlan(order: order, batchSize: 32, rule: rule)
            func train(_ engine: any Engine) throws -> Parameters {
                try engine.prepare(training: subset)
                try engine.trainEpoch(plan)
                return try engine.currentParameters()
            }
            let expected = try train(ReferenceEngine(parameters: start, architecture: architecture, generic: true)).values
            for strategy in [EngineStrategy.data, .layer, .fused] {
                var hashes: [String] = []
                var got: [Float] = []
                for _ in 0..<2 {
                    let engine = try DeviceNetworkEngine(
                        backend: backend, strategy: strategy, architecture: architecture, parameters: start)
                    let p = try train(engine)
                    hashes.append(p.hashString)
                    got = p.values
                }
                var largest: Float = 0
                var outside = 0
                for (a, b) in zip(got, expected) {
                    let d = abs(a - b)
                    largest = max(largest, d.isNaN ? .infinity : d)
                    if !(d <= 5e-5 + 1e-3 * abs(b)) { outside += 1 }
                }
                let check = Check(
                    network: name, strategy: strategy, largestDifference: largest, outside: outside, parameters: got.count, hashes: hashes)
                checks.append(check)
                progress(check.line)
            }
        }
        return checks
    }
}

extension DeviceAgreement.Check {
    /// One line of the report.
    public var line: String {
        let verdict = passed ? "PASS" : "FAIL"
        let repeatability = hashes.count == 2 && hashes[0] == hashes[1] ? "same hash \(hashes[0])" : "hashes differ: \(hashes)"
        return
            "\(verdict) \(network) \(strategy.rawValue): largest difference from the reference \(largestDifference), \(outside) of \(parameters) outside 5e-5 + 1e-3|ref|, \(repeatability)"
    }
}
