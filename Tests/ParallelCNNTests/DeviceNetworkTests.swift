import Foundation
import Testing
import ParallelCNN

/// Trains `engine` over `order` in several host calls of whole steps; returns its statistics and parameters.
private func train(_ engine: any Engine, data: Dataset, order: [Int32], batch: Int, rule: UpdateRule) throws
    -> (TrainingStatistics, Parameters)
{
    try engine.prepare(training: data)
    let plan = EpochPlan(order: order, batchSize: batch, rule: rule)
    try engine.beginEpoch(plan, at: 0)
    var position = 0
    while position < order.count {
        position = min(position + 3 * batch, order.count)
        try engine.train(until: position)
    }
    return (try engine.statistics(), try engine.currentParameters())
}

/// The generated kernels of any network (`NetworkKernels`, `DeviceNetworkEngine`) on OpenCL:
/// on PoCL in CI, against the reference engine's plain layers.
@Suite("Device engine, any network", .serialized, DeviceTestSupport.openCLTrait)
struct DeviceNetworkTests {
    /// (recipe, optimizer, batch, momentum): per-sample SGD, momentum SGD and Adam batches.
    static let rules: [(Recipe, Optimizer, Int, Float?)] = [
        (.original, .sgd, 1, nil), (.modern, .sgd, 8, 0.9), (.modern, .adam, 5, nil), (.original, .sgd, 4, nil)
    ]

    static var networks: [(name: String, architecture: Architecture)] {
        SmallNetworks.cases.map { ($0.name, SmallNetworks.architecture($0.text, $0.input)) }
            + [("random-7", SmallNetworks.random(seed: 7, input: SmallNetworks.rgb))]
    }

    static func rule(_ recipe: Recipe, _ optimizer: Optimizer, _ batch: Int, _ momentum: Float?) -> UpdateRule {
        var rule = UpdateRule(recipe: recipe, optimizer: optimizer, momentum: momentum, batchSize: batch)
        rule.learningRate = optimizer == .adam ? 0.01 : 0.1
        return rule
    }

    @Test(
        "every layer type, a random network, every strategy and rule: the reference's parameters and statistics within tolerance",
        arguments: [EngineStrategy.data, .layer, .fused])
    func agreesWithReference(strategy: EngineStrategy) throws {
        for (name, architecture) in Self.networks {
            let data = SmallNetworks.data(architecture.input, count: 24)
            let start = SmallNetworks.parameters(architecture)
            let order = (0..<24).map { Int32(($0 * 7) % 24) }
            for (recipe, optimizer, batch, momentum) in Self.rules {
                let rule = Self.rule(recipe, optimizer, batch, momentum)
                let reference = ReferenceEngine(parameters: start, architecture: architecture)
                let (expected, p) = try train(reference, data: data, order: order, batch: batch, rule: rule)
                let device = try DeviceNetworkEngine(backend: .opencl, strategy: strategy, architecture: architecture, parameters: start)
                let (got, q) = try train(device, data: data, order: order, batch: batch, rule: rule)
                let reload = try DeviceNetworkEngine(backend: .opencl, strategy: strategy, architecture: architecture, parameters: q)
                let errors = try reload.countErrors(on: data, recipe: recipe)
                let what = "\(name) \(strategy) \(recipe) \(optimizer) B=\(batch)"
                expectClose(q.values, p.values, absolute: 2e-5, relative: 2e-4, what)
                #expect(got.total.samples == expected.total.samples && got.steps == expected.steps, "\(what)")
                #expect(got.total.misclassified == expected.total.misclassified, "\(what)")
                #expect(abs(got.total.lossSum - expected.total.lossSum) <= 1e-4 * abs(expected.total.lossSum) + 1e-4, "\(what)")
                #expect(errors == (try reference.countErrors(on: data, recipe: recipe)), "\(what)")
            }
        }
    }

    @Test(
        "paper, lenet5 and a random network on MNIST: the reference within tolerance, and the same hash over two runs",
        .serialized, TestData.mnistTrait, arguments: ["paper", "lenet5", "random"])
    func mnist(network: String) throws {
        let mnist = try TestData.mnist()
        let architecture =
            network == "random" ? SmallNetworks.random(seed: 11, input: .mnist) : try Architecture(.named(network), input: .mnist)
        let subset = mnist.train.prefix(256)
        let start = Initialization.seeded(2).makeParameters(for: architecture)
        let order = (0..<256).map { Int32(($0 * 37) % 256) }
        let rule = Self.rule(.modern, .adam, 32, nil)
        let reference = ReferenceEngine(parameters: start, architecture: architecture, generic: true)
        let (_, p) = try train(reference, data: subset, order: order, batch: 32, rule: rule)
        for strategy in [EngineStrategy.data, .fused] {
            var hashes: [String] = []
            for _ in 0..<2 {
                let device = try DeviceNetworkEngine(backend: .opencl, strategy: strategy, architecture: architecture, parameters: start)
                let (_, q) = try train(device, data: subset, order: order, batch: 32, rule: rule)
                // Adam divides by the gradient's own scale, so a parameter whose gradient is
                // rounding noise (a ReLU at 0, a max-pool tie) may move differently: at most 1 in
                // 1000 such, and none by more than 1e-3.
                let loose = mismatches(q.values, p.values, absolute: 5e-5, relative: 1e-3)
                #expect(loose.count <= q.values.count / 1000, "\(network) \(strategy): \(loose.count) of \(q.values.count) differ")
                expectClose(q.values, p.values, absolute: 1e-3, relative: 0, "\(network) \(strategy)")
                hashes.append(q.hashString)
            }
            #expect(hashes[0] == hashes[1], "\(network) \(strategy): \(hashes)")
        }
    }

    @Test("the generated source names each layer's passes after the CPU versions, with every constant from the architecture")
    func generatedNames() throws {
        let kernels = NetworkKernels(try Architecture(.named("lenet5"), input: .mnist))
        #expect(kernels.layers[0].forward == "conv_forward_1")
        #expect(kernels.layers[0].backwardInput == nil)
        #expect(kernels.layers[0].gradient == "conv_backward_1")
        #expect(kernels.layers.contains { $0.forward.hasPrefix("pool_forward_") })
        #expect(kernels.layers.last?.backwardInput == "dense_backward_input_\(kernels.layers.count)")
        #expect(kernels.source.contains("#define W_OFF \(kernels.architecture.layers.last!.weightOffset)"))
        #expect(kernels.defines["NET_PARAMS"] == String(kernels.architecture.parameterCount))
        for name in kernels.layers.map(\.forward) + [NetworkKernels.fusedKernel] {
            #expect(kernels.source.contains("KERNEL \(name)("), "\(name)")
        }
    }

    @Test("--engine opencl: the paper's own kernels for fused and layer, the generated ones for data and any other network")
    func registry() throws {
        let descriptor = try EngineRegistry.descriptor(.opencl)
        let lenet = try Architecture(NetworkDescription.named("lenet5"), input: .mnist)
        let paperStart = Initialization.original.makeParameters()
        #expect(try descriptor.makeEngine(EngineOptions(strategy: .fused), parameters: paperStart) is DeviceEngine)
        #expect(try descriptor.makeEngine(EngineOptions(strategy: .data), parameters: paperStart) is DeviceNetworkEngine)
        for strategy in [EngineStrategy.fused, .layer, .data] {
            let engine = try descriptor.makeEngine(
                EngineOptions(strategy: strategy, architecture: lenet), parameters: Initialization.seeded(1).makeParameters(for: lenet))
            #expect((engine as? DeviceNetworkEngine)?.strategy == strategy)
        }
    }

    @Test("a device out of memory is a typed error with the driver's text, not a crash")
    func outOfMemory() throws {
        let device = try DeviceBackend.opencl.open()
        #expect {
            _ = try device.allocate(bytes: 1 << 44)
        } throws: { error in
            guard case DeviceError.driver(_, let call, let code, _) = error else { return false }
            return call.hasPrefix("clCreateBuffer") && code != 0
        }
        // A batch whose activations do not fit 32-bit offsets is refused before anything is allocated.
        let wide = SmallNetworks.architecture("conv 128 3x3 pad=1; dense 10", .mnist)
        let engine = try DeviceNetworkEngine(
            backend: .opencl, strategy: .data, architecture: wide, parameters: SmallNetworks.parameters(wide))
        try engine.prepare(training: SmallNetworks.data(.mnist, count: 4))
        #expect(throws: EngineError.self) {
            try engine.beginEpoch(EpochPlan(order: [0], batchSize: 60_000, rule: UpdateRule(recipe: .modern)), at: 0)
        }
    }

    @Test("a mismatched data set and misuse are typed errors, not crashes")
    func misuse() throws {
        let architecture = SmallNetworks.architecture("dense 12 tanh; dense 10", SmallNetworks.grey)
        let engine = try DeviceNetworkEngine(
            backend: .opencl, strategy: .data, architecture: architecture, parameters: SmallNetworks.parameters(architecture))
        #expect(throws: EngineError.self) { try engine.train(until: 1) }
        #expect(throws: EngineError.self) { try engine.prepare(training: SmallNetworks.data(SmallNetworks.rgb)) }
        try engine.prepare(training: SmallNetworks.data(SmallNetworks.grey))
        try engine.beginEpoch(EpochPlan(order: [0, 1, 2, 3], batchSize: 2, rule: UpdateRule(recipe: .modern)), at: 0)
        #expect(throws: EngineError.self) { try engine.train(until: 1) }
        #expect(throws: EngineError.self) {
            try engine.beginEpoch(EpochPlan(order: [99], batchSize: 1, rule: UpdateRule(recipe: .modern)), at: 0)
        }
    }
}
