import Foundation
import Testing
import ParallelCNN

/// Small networks that together use every layer type, activation and option: padding, stride > 1,
/// multi-channel input, both poolings, the shared subsampling, dense layers.
enum SmallNetworks {
    static let rgb = ImageShape(channels: 3, height: 10, width: 10)
    static let grey = ImageShape(channels: 1, height: 12, width: 12)

    static let cases: [(name: String, text: String, input: ImageShape)] = [
        ("conv-pad-stride-rgb", "conv 4 3x3 stride=2 pad=1 tanh; conv 5 2x2 relu; dense 10", rgb),
        ("conv-maxpool-dense", "conv 3 3x3 pad=1 relu; maxpool 2x2; dense 7 sigmoid; dense 10", rgb),
        ("subsample-avgpool", "conv 4 3x3 sigmoid; subsample 2x2 tanh; avgpool 2x2 stride=1; dense 10", grey),
        ("overlapping-maxpool", "conv 2 3x3 stride=1; relu; maxpool 3x3 stride=2; dense 10", grey),
        ("dense-only", "dense 12 tanh; dense 10", grey)
    ]

    static func architecture(_ text: String, _ input: ImageShape) -> Architecture {
        try! Architecture(NetworkDescription.parse(text), input: input)
    }

    /// `count` images of `shape` with values in [0, 1] and labels 0...9, from `seed`.
    static func data(_ shape: ImageShape, count: Int = 12, seed: UInt64 = 7) -> Dataset {
        var rng = SplitMix64(seed: seed)
        let images = (0..<(count * shape.count)).map { _ in rng.nextUnitFloat() }
        let labels = (0..<count).map { _ in UInt8(rng.next() % 10) }
        return Dataset(name: "synthetic", images: images, labels: labels, shape: shape)
    }

    /// Parameters of `architecture`, scaled down so that no unit saturates.
    static func parameters(_ architecture: Architecture, seed: UInt64 = 3) -> Parameters {
        Initialization.seeded(seed).makeParameters(for: architecture)
    }

    /// A random valid network on `input` from `seed`: one or two conv layers with random filters,
    /// kernel, stride and padding, an optional pooling, activations, dense layers.
    static func random(seed: UInt64, input: ImageShape) -> Architecture {
        var rng = SplitMix64(seed: seed)
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        let activations = ["sigmoid", "tanh", "relu", ""]
        while true {
            var layers: [String] = []
            for _ in 0...pick(2) {
                let k = 1 + pick(3), pad = pick(k), stride = 1 + pick(2)
                layers.append("conv \(1 + pick(5)) \(k)x\(k) stride=\(stride) pad=\(pad) \(activations[pick(4)])")
                switch pick(3) {
                case 0: layers.append("maxpool 2x2")
                case 1: layers.append("avgpool 2x2 stride=1")
                default: break
                }
            }
            if pick(2) == 0 { layers.append("dense \(5 + pick(20)) \(activations[pick(3)])") }
            layers.append("dense 10")
            if let architecture = try? Architecture(NetworkDescription.parse(layers.joined(separator: "; ")), input: input) {
                return architecture
            }
        }
    }
}

@Suite("Network descriptions")
struct NetworkDescriptionTests {
    @Test("every preset parses, resolves on MNIST and prints back to itself")
    func presets() throws {
        for preset in NetworkDescription.presets {
            let again = try NetworkDescription.parse(preset.text)
            #expect(again == preset, "\(preset.presetName!)")
            _ = try Architecture(preset, input: .mnist)
        }
        #expect(try NetworkDescription.named("paper") == .paper)
        #expect(try NetworkDescription.named("conv 6 5x5 sigmoid\nsubsample 4 sigmoid # the paper's s1\ndense 10").presetName == "paper")
    }

    @Test("the paper's network has SPEC's layout: 2343 parameters in canonical order")
    func paperLayout() {
        let paper = Architecture.paper
        #expect(paper.isPaper)
        #expect(paper.parameterCount == Parameters.count)
        let offsets = paper.parameterLayers.flatMap { [$0.weightOffset, $0.biasOffset] }
        #expect(
            offsets == [
                Parameters.Offset.c1Weight, Parameters.Offset.c1Bias, Parameters.Offset.s1Weight, Parameters.Offset.s1Bias,
                Parameters.Offset.fWeight, Parameters.Offset.fBias
            ])
        let scale = paper.scaleVector(recipe: .original, batchSize: 8)
        #expect(scale == UpdateRule(recipe: .original, batchSize: 8).scaleVector())
    }

    @Test("LeNet-5's shapes and parameter count (61,706)")
    func lenet() throws {
        let lenet = try Architecture(NetworkDescription.named("lenet5"), input: .mnist)
        #expect(lenet.parameterCount == 61_706)
        #expect(
            lenet.layers.map(\.output.description) == [
                "6x28x28", "6x28x28", "6x14x14", "16x10x10", "16x10x10",
                "16x5x5", "120x1x1", "120x1x1", "84x1x1", "84x1x1", "10x1x1"
            ])
        #expect(
            lenet.tensors.map(\.name) == [
                "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "dense1.weight",
                "dense1.bias", "dense2.weight", "dense2.bias", "dense3.weight", "dense3.bias"
            ])
        #expect(lenet.tensors[0].shape == [6, 1, 5, 5])
    }

    @Test(
        "errors name the layer and the token",
        arguments: [
            ("conv 6 5x5; pool 2; dense 10", "unknown layer \"pool\"", "pool", 13),
            ("conv 0 5x5; dense 10", "at least 1", "0", 6),
            ("conv 6 5x4; dense 10", "square", "5x4", 8),
            ("conv 6 5x5 pad=-1; dense 10", "at least 0", "-1", 16),
            ("conv 6 5x5 bias=1; dense 10", "unknown option \"bias\"", "bias", 12),
            ("maxpool 2x2 relu; dense 10", "takes no activation", "maxpool", 1),
            ("dense 10 relu sigmoid", "one activation", "sigmoid", 15),
            ("conv 8 5x5 relu banana; dense 10", "unexpected value", "banana", 17),
            ("conv 6 5x5 pad=2 relu maxpool 2x2; dense 10", "starts another layer", "maxpool", 23),
            ("conv 8 5x5 pad=100; dense 10", "smaller than the kernel", "100", 16),
            ("conv 8 99999x99999; dense 10", "limit of", "99999", 8),
            ("", "no layers", nil, nil)
        ] as [(String, String, String?, Int?)])
    func syntaxErrors(text: String, message: String, token: String?, column: Int?) {
        #expect {
            try NetworkDescription.parse(text)
        } throws: { error in
            let e = error as! NetworkDescriptionError
            return e.message.contains(message) && e.token == token && e.column == column
        }
    }

    @Test(
        "shape errors are found when the network meets its input",
        arguments: [
            ("conv 6 29x29; dense 10", "larger than its padded 28x28 input"),
            ("conv 6 5x5; maxpool 30x30; dense 10", "larger than its input"),
            ("conv 6 5x5", "last layer must be \"dense 10\""),
            ("dense 10; relu", "last layer must be"),
            ("conv 6 5x5; dense 9", "needs 10 outputs"),
            ("relu; dense 10", "cannot be the first layer"),
            ("dense 5000; dense 5000; dense 10", "more than 16000000 parameters")
        ])
    func shapeErrors(text: String, message: String) throws {
        let description = try NetworkDescription.parse(text)
        #expect {
            try Architecture(description, input: .mnist)
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test("a name that is no preset gets the list of presets")
    func unknownPreset() {
        #expect(throws: NetworkDescriptionError.self) { try NetworkDescription.named("lenet") }
        #expect((try? NetworkDescription.named("lenet")) == nil)
    }
}

@Suite("Generic layers: gradients")
struct LayerGradientTests {
    /// Finite differences of the loss (modern) or of the logits weighted by the fixed output
    /// error (original, whose error has no output derivative) against the reference's ascent.
    @Test(
        "finite differences match the reference gradient, every layer type and output rule",
        arguments: SmallNetworks.cases.indices, Recipe.allCases)
    func finiteDifferences(index: Int, recipe: Recipe) throws {
        let (name, text, input) = SmallNetworks.cases[index]
        let architecture = SmallNetworks.architecture(text, input)
        let data = SmallNetworks.data(input)
        let p = SmallNetworks.parameters(architecture)
        let engine = ReferenceEngine(parameters: p, architecture: architecture)
        let unscale = architecture.scaleVector(recipe: recipe, batchSize: 1)
        var checked = 0, kinks = 0, failures: [String] = []
        for sample in 0..<3 {
            engine.load(parameters: p)
            let analytic = engine.gradient(of: data, sample: sample, recipe: recipe).gradient.values
            let label = Int(data.labels[sample])
            // The original rule's error, held fixed: δ = onehot - σ(z).
            let sigmoid = engine.probabilities(of: data, sample: sample, recipe: .original)
            let delta = sigmoid.indices.map { Double(($0 == label ? 1 : 0) - sigmoid[$0]) }
            func objective(_ q: Parameters) -> Double {
                engine.load(parameters: q)
                switch recipe {
                case .modern: return -engine.loss(of: data, sample: sample, recipe: .modern)
                case .original: return zip(engine.logits(of: data, sample: sample), delta).reduce(0) { $0 + Double($1.0) * $1.1 }
                }
            }
            // Every tensor: its first, last and a few values between.
            for tensor in architecture.tensors {
                let r = tensor.range
                let indices = Set([r.lowerBound, r.upperBound - 1] + stride(from: r.lowerBound, to: r.upperBound, by: max(1, r.count / 5)))
                for i in indices.sorted() {
                    // Small enough that ReLU and max-pool kinks are rarely crossed.
                    let h: Float = 1e-3
                    var plus = p, minus = p
                    plus.values[i] += h
                    minus.values[i] -= h
                    let (up, centre, down) = (objective(plus), objective(p), objective(minus))
                    let numeric = Float((up - down) / Double(plus.values[i] - minus.values[i]))
                    // A ReLU or max-pool kink inside ±h makes the two one-sided slopes differ:
                    // no derivative to check there.
                    let right = (up - centre) / Double(plus.values[i] - p.values[i])
                    let left = (centre - down) / Double(p.values[i] - minus.values[i])
                    if abs(right - left) > 1e-2 + 0.05 * abs(right) {
                        kinks += 1
                        continue
                    }
                    let g = analytic[i] / unscale[i]
                    if !(abs(numeric - g) <= 3e-3 + 3e-2 * abs(g)) {
                        failures.append("\(tensor.name)[\(i - r.lowerBound)] sample \(sample): numeric \(numeric), analytic \(g)")
                    }
                    if abs(g) > 1e-3 { checked += 1 }
                }
            }
        }
        #expect(failures.isEmpty, "\(name) \(recipe): \(failures.prefix(5))")
        #expect(checked > 10, "\(name) \(recipe): too few non-zero gradients to prove anything (\(checked))")
        #expect(kinks * 10 <= checked, "\(name) \(recipe): \(kinks) values skipped at kinks, \(checked) checked")
    }

    @Test("max pooling: ties send the whole error to the first maximum, in both backends")
    func maxPoolTies() {
        let architecture = SmallNetworks.architecture("maxpool 2x2; dense 10", ImageShape(channels: 1, height: 4, width: 4))
        // Each 2x2 window holds a tie: its maximum appears twice.
        let image: [Float] = [
            0.5, 0.5, 0.1, 0.9,
            0.2, 0.1, 0.9, 0.3,
            0.7, 0.0, 0.4, 0.4,
            0.0, 0.7, 0.4, 0.4
        ]
        let data = Dataset(name: "ties", images: image, labels: [3], shape: architecture.input)
        var p = Parameters(zerosFor: architecture)
        for i in p.values.indices { p.values[i] = Float(i % 7) * 0.1 - 0.3 }
        let reference = ReferenceEngine(parameters: p, architecture: architecture)
        let sequential = SequentialEngine(parameters: p, architecture: architecture)
        let a = reference.gradient(of: data, sample: 0, recipe: .modern).gradient.values
        let b = sequential.gradient(of: data, sample: 0, recipe: .modern).gradient.values
        expectClose(b, a, absolute: 1e-6, relative: 1e-5, "gradient through tied maxima")
        let pooled = reference.layerOutputs(of: data, sample: 0, recipe: .modern)[0]
        #expect(pooled == [0.5, 0.9, 0.7, 0.4])

    }
}

@Suite("Generic layers: engines against the reference")
struct GenericEngineTests {
    static let randomSeeds: [UInt64] = [1, 2, 3, 4, 5, 6]

    @Test("sequential: every layer's output and the gradient agree with the reference", arguments: randomSeeds)
    func sequentialAgrees(seed: UInt64) {
        let input = seed % 2 == 0 ? SmallNetworks.rgb : SmallNetworks.grey
        let architecture = SmallNetworks.random(seed: seed, input: input)
        let data = SmallNetworks.data(input)
        let p = SmallNetworks.parameters(architecture, seed: seed)
        expectSequentialAgrees(architecture, data: data, parameters: p, recipes: Recipe.allCases, samples: 0..<4)
    }

    /// Each layer's output, the gradient and the loss of `sequential` within float tolerance of
    /// the reference's, for each sample of `samples` under each recipe.
    private func expectSequentialAgrees(
        _ architecture: Architecture, data: Dataset, parameters p: Parameters, recipes: [Recipe], samples: Range<Int>
    ) {
        let reference = ReferenceEngine(parameters: p, architecture: architecture)
        let sequential = SequentialEngine(parameters: p, architecture: architecture)
        for recipe in recipes {
            for sample in samples {
                let a = reference.layerOutputs(of: data, sample: sample, recipe: recipe)
                let b = sequential.layerOutputs(of: data, sample: sample, recipe: recipe)
                for l in a.indices {
                    expectClose(b[l], a[l], absolute: 1e-5, relative: 1e-4, "\(architecture.network.text): layer \(l + 1) output")
                }
                let ga = reference.gradient(of: data, sample: sample, recipe: recipe)
                let gb = sequential.gradient(of: data, sample: sample, recipe: recipe)
                expectClose(
                    gb.gradient.values, ga.gradient.values, absolute: 1e-5, relative: 1e-3,
                    "\(architecture.network.text) \(recipe): gradient, sample \(sample)")
                #expect(abs(ga.loss - gb.loss) <= 1e-5 + 1e-4 * abs(ga.loss))
            }
        }
    }

    @Test("training steps: every CPU engine follows the reference within float tolerance", arguments: [1, 2] as [UInt64])
    func trainingAgrees(seed: UInt64) throws {
        let input = SmallNetworks.rgb
        let architecture = SmallNetworks.random(seed: 10 + seed, input: input)
        let data = SmallNetworks.data(input, count: 48, seed: seed)
        let p = SmallNetworks.parameters(architecture, seed: seed)
        for (recipe, batch, optimizer) in [
            (Recipe.original, 1, Optimizer.sgd), (.modern, 8, .adam), (.modern, 6, .sgd), (.modern, 20, .adam)
        ] {
            var rule = UpdateRule(recipe: recipe, optimizer: optimizer, learningRate: optimizer == .adam ? 0.003 : 0.05, batchSize: batch)
            rule.step = 1
            let plan = EpochPlan(order: (0..<48).map(Int32.init), batchSize: batch, rule: rule)
            let engines: [any Engine] = [
                ReferenceEngine(parameters: p, architecture: architecture),
                SequentialEngine(parameters: p, architecture: architecture),
                ThreadedEngine(parameters: p, threads: 2, strategy: .layer, architecture: architecture),
                ThreadedEngine(parameters: p, threads: 3, strategy: .data, architecture: architecture)
            ]
            try expectFollowReference(
                engines, data: data, plan: plan, from: p, "\(architecture.network.text), \(recipe) batch \(batch) \(optimizer)")
        }
    }

    @Test("LeNet-5 in blocks (padded convolutions, vector max pooling with relu ties) follows the reference")
    func lenetBlocksAgree() throws {
        let architecture = try Architecture(NetworkDescription.named("lenet5"), input: .mnist)
        let data = SmallNetworks.data(.mnist, count: 40, seed: 4)
        let p = Initialization.seeded(6).makeParameters(for: architecture)
        let engines: [any Engine] = [
            ReferenceEngine(parameters: p, architecture: architecture),
            SequentialEngine(parameters: p, architecture: architecture),
            ThreadedEngine(parameters: p, threads: 2, strategy: .data, architecture: architecture)
        ]
        // 20: blocks of 8, 8 and 4 samples.
        try expectFollowReference(engines, data: data, plan: Self.adamPlan(samples: 40, batch: 20), from: p, "lenet5")
    }

    @Test("convolutions that read their input in place (stride 1, few filters, rows filling the vectors) follow the reference")
    func inPlaceConvolutionsAgree() throws {
        let lenet = try Architecture(NetworkDescription.named("lenet5"), input: .mnist)
        #expect(lenet.layers.filter(CPULayers.readsInputInPlace).map(\.name) == ["conv1"])
        let wide = try Architecture(NetworkDescription.named("paper-c64"), input: .mnist)
        #expect(wide.layers.filter(CPULayers.readsInputInPlace).isEmpty)
        // conv1: padded, 2 channels, 7 filters (blocks of 6 and 1), rows of 30; conv2: unpadded,
        // 7 channels with an input error, 5 filters (4 and 1), rows of 28 (a vector and a part).
        let input = ImageShape(channels: 2, height: 30, width: 30)
        let architecture = SmallNetworks.architecture("conv 7 3x3 pad=1 relu; conv 5 3x3 tanh; maxpool 2x2; dense 10", input)
        #expect(architecture.layers.filter(CPULayers.readsInputInPlace).count == 2)
        let data = SmallNetworks.data(input, count: 24, seed: 5)
        let p = SmallNetworks.parameters(architecture, seed: 8)
        expectSequentialAgrees(architecture, data: data, parameters: p, recipes: [.modern], samples: 0..<3)
        let engines: [any Engine] = [
            ReferenceEngine(parameters: p, architecture: architecture),
            SequentialEngine(parameters: p, architecture: architecture),
            ThreadedEngine(parameters: p, threads: 2, strategy: .layer, architecture: architecture),
            ThreadedEngine(parameters: p, threads: 3, strategy: .data, architecture: architecture)
        ]
        // 12: blocks of 8 and 4 samples.
        try expectFollowReference(engines, data: data, plan: Self.adamPlan(samples: 24, batch: 12), from: p, "in-place convolutions")
        // The layer strategy splits the filters across threads: the same bits as sequential.
        let values = try engines[1...].map { try $0.currentParameters().values.map(\.bitPattern) }
        #expect(values[1] == values[0] && values[2] == values[0])
    }

    /// An epoch of the first `samples` samples in order, in batches of `batch`, under Adam (the
    /// modern recipe) from its first step.
    private static func adamPlan(samples: Int, batch: Int) -> EpochPlan {
        var rule = UpdateRule(recipe: .modern, optimizer: .adam, learningRate: 0.003, batchSize: batch)
        rule.step = 1
        return EpochPlan(order: (0..<samples).map(Int32.init), batchSize: batch, rule: rule)
    }

    /// Trains an epoch of `plan` on each engine (the first the reference) and expects every
    /// other engine's parameters within float tolerance of the reference's, which moved.
    private func expectFollowReference(
        _ engines: [any Engine], data: Dataset, plan: EpochPlan, from p: Parameters, _ context: String
    ) throws {
        var results: [[Float]] = []
        for engine in engines {
            try engine.prepare(training: data)
            try engine.trainEpoch(plan)
            results.append(try engine.currentParameters().values)
        }
        #expect(results[0] != p.values, "training changed nothing")
        for k in 1..<results.count {
            expectClose(results[k], results[0], absolute: 2e-4, relative: 2e-3, "\(engines[k].description) vs reference, \(context)")
        }
    }

    @Test("predictions in blocks equal predictions one sample at a time")
    func blockPredictions() throws {
        let architecture = try Architecture(NetworkDescription.named("lenet5"), input: .mnist)
        let data = try TestData.mnist()
        // Training on 256 MNIST samples first, so that the predictions differ between samples.
        let trainer = SequentialEngine(parameters: Initialization.seeded(2).makeParameters(for: architecture), architecture: architecture)
        try trainer.prepare(training: data.train)
        try trainer.trainEpoch(
            EpochPlan(
                order: (0..<256).map(Int32.init), batchSize: 16,
                rule: UpdateRule(recipe: .modern, optimizer: .adam, learningRate: 0.003, batchSize: 16)))
        let p = try trainer.currentParameters()
        func predictions(_ engine: any Engine) throws -> [UInt8] {
            var result = [UInt8](repeating: 255, count: 37)
            try result.withUnsafeMutableBufferPointer { try engine.predict(data.test, range: 100..<137, recipe: .modern, into: $0) }
            return result
        }
        // Sequential and threads data predict in blocks of 8 (37 = 4 blocks and 5); the layer
        // strategy runs one sample at a time.
        let single = try predictions(ThreadedEngine(parameters: p, threads: 2, strategy: .layer, architecture: architecture))
        #expect(Set(single).count > 3, "predictions this alike prove little: \(single)")
        #expect(try predictions(SequentialEngine(parameters: p, architecture: architecture)) == single)
        #expect(try predictions(ThreadedEngine(parameters: p, threads: 3, strategy: .data, architecture: architecture)) == single)
    }

    @Test(
        "threads layer is bit-identical to sequential; threads data is identical across thread counts and to sequential",
        arguments: ["lenet5", "paper-c16", "conv 4 3x3 stride=2 pad=1 tanh; maxpool 2x2; subsample 2x2 sigmoid; dense 16 relu; dense 10"])
    func threadsBitIdentical(net: String) throws {
        let architecture = try Architecture(NetworkDescription.named(net), input: .mnist)
        let data = SmallNetworks.data(.mnist, count: 40, seed: 9)
        let p = Initialization.seeded(5).makeParameters(for: architecture)
        // 19: blocks of 8, 8 and 3 samples (`CPUNetwork.defaultBlock`).
        for batch in [1, 7, 19] {
            let rule = UpdateRule(recipe: .modern, optimizer: .adam, learningRate: 0.003, batchSize: batch)
            let plan = EpochPlan(order: (0..<40).map { Int32(($0 * 17) % 40) }, batchSize: batch, rule: rule)
            func train(_ engine: any Engine) throws -> [Float] {
                try engine.prepare(training: data)
                try engine.trainEpoch(plan)
                return try engine.currentParameters().values
            }
            let sequential = try train(SequentialEngine(parameters: p, architecture: architecture))
            for threads in [2, 3] {
                #expect(
                    try train(ThreadedEngine(parameters: p, threads: threads, strategy: .layer, architecture: architecture)) == sequential,
                    "\(net): layer, \(threads) threads, batch \(batch)")
                #expect(
                    try train(ThreadedEngine(parameters: p, threads: threads, strategy: .data, architecture: architecture)) == sequential,
                    "\(net): data, \(threads) threads, batch \(batch)")
            }
        }
    }

    @Test("the generic layers on the paper's description agree with SPEC's own code", arguments: Recipe.allCases)
    func genericPaperAgreesWithSPEC(recipe: Recipe) {
        let data = SmallNetworks.data(.mnist, count: 6)
        let p = Initialization.original.makeParameters()
        let spec = ReferenceEngine(parameters: p)
        let generic = ReferenceEngine(parameters: p, architecture: .paper, generic: true)
        let fastGeneric = SequentialEngine(parameters: p, architecture: .paper, generic: true)
        for sample in 0..<6 {
            let a = spec.gradient(of: data, sample: sample, recipe: recipe)
            let b = generic.gradient(of: data, sample: sample, recipe: recipe)
            expectClose(b.gradient.values, a.gradient.values, absolute: 1e-6, relative: 1e-4, "generic reference, sample \(sample)")
            // The fast generic layers too (the engines use SPEC's specialised kernels for the paper).
            let fast = fastGeneric.gradient(of: data, sample: sample, recipe: recipe).gradient.values
            expectClose(fast, a.gradient.values, absolute: 1e-6, relative: 1e-3, "generic CPU layers, sample \(sample)")
        }
    }
}

@Suite("Checkpoints of described networks")
struct NetworkCheckpointTests {
    @Test("a LeNet-5 checkpoint names its tensors after the layers and records its network")
    func lenetRoundTrip() throws {
        let lenet = try Architecture(NetworkDescription.named("lenet5"), input: .mnist)
        let p = Initialization.seeded(2).makeParameters(for: lenet)
        let checkpoint = Checkpoint(parameters: p, velocity: p, metadata: ["recipe": "modern"], architecture: lenet)
        let bytes = try checkpoint.encoded()
        let file = try SafetensorsFile.decode(bytes, path: "lenet")
        #expect(file.tensors.map(\.name).prefix(3) == ["conv1.weight", "conv1.bias", "conv2.weight"])
        #expect(file.tensor(named: "dense1.weight")?.shape == [120, 400])
        #expect(file.tensor(named: "momentum.dense3.bias") != nil)
        #expect(file.metadata["network"] == lenet.network.text)
        #expect(file.metadata["input_shape"] == "1x28x28")
        let back = try Checkpoint.decode(bytes)
        #expect(back == checkpoint)
        #expect(back.architecture == lenet)
    }

    @Test("the paper's checkpoints keep SPEC's names and no network entry, so older files read the same")
    func paperUnchanged() throws {
        let p = Initialization.original.makeParameters()
        let bytes = try Checkpoint(parameters: p, metadata: ["recipe": "original"]).encoded()
        let file = try SafetensorsFile.decode(bytes, path: "paper")
        #expect(file.tensors.map(\.name) == TensorName.allCases.map(\.rawValue))
        #expect(file.metadata["network"] == nil)
        #expect(try Checkpoint.decode(bytes).architecture.isPaper)
    }

    @Test("a checkpoint whose network entry is broken or does not fit its tensors is refused")
    func refused() throws {
        let lenet = try Architecture(NetworkDescription.named("lenet5"), input: .mnist)
        let p = Initialization.seeded(2).makeParameters(for: lenet)
        var file = try SafetensorsFile.decode(try Checkpoint(parameters: p, architecture: lenet).encoded(), path: "x")
        file.metadata["network"] = "conv 6 5x5; bogus 3; dense 10"
        #expect { try Checkpoint.decode(try file.encoded()) } throws: { "\($0)".contains("bogus") }
        file.metadata["network"] = "paper-c16"
        #expect { try Checkpoint.decode(try file.encoded()) } throws: { "\($0)".contains("unexpected tensor") }
    }
}

@Suite("CIFAR-10 reader")
struct CIFAR10Tests {
    /// `records` records with labels `label(r)` and pixel bytes `(r + i) % 256`.
    static func batch(records: Int, label: (Int) -> UInt8 = { UInt8($0 % 10) }) -> Data {
        var bytes = [UInt8]()
        for r in 0..<records {
            bytes.append(label(r))
            bytes += (0..<3072).map { UInt8((r + $0) % 256) }
        }
        return Data(bytes)
    }

    @Test("reads the six batches as 3x32x32 images, planes in [c][y][x] order")
    func reads() throws {
        try TestData.withTemporaryDirectory { dir in
            for name in CIFAR10.trainFiles + [CIFAR10.testFile] {
                try Self.batch(records: 3).write(to: dir.appendingPathComponent(name))
            }
            let pair = try DatasetLoader.load(.cifar10, from: dir.path)
            #expect(pair.train.count == 15 && pair.test.count == 3)
            #expect(pair.train.shape == .cifar10)
            #expect(pair.train.labels.prefix(4) == [0, 1, 2, 0])
            // Sample 1, green plane (c = 1), row 0, column 5: byte (1 + 1024 + 5) % 256.
            #expect(pair.train.image(1)[pair.train.image(1).startIndex + 1024 + 5] == Dataset.pixelTable[(1 + 1029) % 256])
        }
    }

    @Test("malformed files are refused with the file named")
    func malformed() throws {
        try TestData.withTemporaryDirectory { dir in
            let path = dir.appendingPathComponent("b.bin").path
            try Self.batch(records: 2).prefix(3073 + 100).write(to: URL(fileURLWithPath: path))
            #expect(throws: DataError.partialRecord(path: path, recordBytes: 3073, gotBytes: 3173)) { try CIFAR10.readBatch(at: path) }
            #expect(DataError.partialRecord(path: path, recordBytes: 3073, gotBytes: 3173).description.contains("100 bytes into record 2"))
            try Self.batch(records: 3) { $0 == 2 ? 10 : 1 }.write(to: URL(fileURLWithPath: path))
            #expect(throws: DataError.badLabel(path: path, index: 2, value: 10)) { try CIFAR10.readBatch(at: path) }
            try Data().write(to: URL(fileURLWithPath: path))
            #expect(throws: DataError.partialRecord(path: path, recordBytes: 3073, gotBytes: 0)) { try CIFAR10.readBatch(at: path) }
            #expect(throws: DataError.fileNotFound(path: path + "x")) { try CIFAR10.readBatch(at: path + "x") }
            // A directory missing batches names them all.
            try Self.batch(records: 1).write(to: dir.appendingPathComponent("data_batch_1.bin"))
            #expect {
                try DatasetLoader.load(.cifar10, from: dir.path)
            } throws: { error in
                guard case .missingFiles(_, _, let missing) = error as? DataError else { return false }
                return missing == ["data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"]
            }
        }
    }

    @Test("LeNet-style networks resolve on CIFAR-10's 3x32x32 input and train a step on it")
    func trainsOnCIFARShape() throws {
        let architecture = try Architecture(
            NetworkDescription.parse("conv 6 5x5 relu; maxpool 2x2; conv 16 5x5 relu; maxpool 2x2; dense 10"), input: .cifar10)
        #expect(architecture.layers[5].output == ImageShape(channels: 16, height: 5, width: 5))
        let data = SmallNetworks.data(.cifar10, count: 8)
        let p = Initialization.seeded(1).makeParameters(for: architecture)
        let reference = ReferenceEngine(parameters: p, architecture: architecture)
        let sequential = SequentialEngine(parameters: p, architecture: architecture)
        let plan = EpochPlan(order: (0..<8).map(Int32.init), batchSize: 4, rule: UpdateRule(recipe: .modern, batchSize: 4))
        for engine in [reference, sequential] as [any Engine] {
            try engine.prepare(training: data)
            try engine.trainEpoch(plan)
        }
        expectClose(
            try sequential.currentParameters().values, reference.currentParameters().values,
            absolute: 2e-4, relative: 2e-3, "CIFAR-shaped step")
    }
}
