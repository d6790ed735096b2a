import Foundation
import Testing
import ParallelCNN

@Suite("Gradients and engine agreement", TestData.mnistTrait)
struct GradientTests {
    /// Samples used by the checks: a spread of digits.
    static let samples = [0, 1, 7, 123, 4567]

    @Test("modern recipe: finite differences match the reference gradient for every tensor", arguments: TensorName.allCases)
    func finiteDifferences(tensor: TensorName) throws {
        let data = try TestData.mnist()
        // Smaller weights than the original range keep sigmoids out of saturation, so every
        // tensor's gradient is far from zero and the check has something to check.
        var p = Initialization.seeded(3).makeParameters()
        for i in p.values.indices { p.values[i] *= 0.3 }
        let engine = ReferenceEngine(parameters: p)
        let range = Parameters.range(of: tensor)
        let indices =
            range.count <= 16 ? Array(range) : stride(from: range.lowerBound, to: range.upperBound, by: range.count / 12).map { $0 }
        var checked = 0
        for sample in Self.samples.prefix(3) {
            engine.load(parameters: p)
            let analytic = engine.gradient(of: data.train, sample: sample, recipe: .modern).gradient
            for i in indices {
                let h: Float = 1e-2
                var plus = p, minus = p
                plus.values[i] += h
                minus.values[i] -= h
                engine.load(parameters: plus)
                let lossPlus = engine.loss(of: data.train, sample: sample, recipe: .modern)
                engine.load(parameters: minus)
                let lossMinus = engine.loss(of: data.train, sample: sample, recipe: .modern)
                // The engines return the ascent direction -dL/dθ.
                let numeric = Float(-(lossPlus - lossMinus) / Double(plus.values[i] - minus.values[i]))
                let g = analytic.values[i]
                #expect(
                    abs(numeric - g) <= 2e-3 + 2e-2 * abs(g),
                    "\(tensor.rawValue)[\(i - range.lowerBound)] sample \(sample): numeric \(numeric), analytic \(g)")
                if abs(g) > 1e-3 { checked += 1 }
            }
        }
        #expect(checked > 0, "every checked gradient of \(tensor.rawValue) was ~0: the check proved nothing")
    }

    @Test("sequential engine: activations and gradients agree with the reference", arguments: Recipe.allCases)
    func sequentialAgrees(recipe: Recipe) throws {
        let data = try TestData.mnist()
        for seed in [1, 2] as [UInt64] {
            let p = seed == 1 ? Initialization.original.makeParameters() : Initialization.seeded(seed).makeParameters()
            let reference = ReferenceEngine(parameters: p), sequential = SequentialEngine(parameters: p)
            for sample in Self.samples + Array(200..<220) {
                let a = reference.activations(of: data.train, sample: sample, recipe: recipe)
                let b = sequential.activations(of: data.train, sample: sample, recipe: recipe)
                expectClose(b.c1, a.c1, absolute: 1e-5, relative: 1e-4, "c1 output, sample \(sample)")
                expectClose(b.s1, a.s1, absolute: 1e-5, relative: 1e-4, "s1 output, sample \(sample)")
                expectClose(b.output, a.output, absolute: 1e-5, relative: 1e-4, "output, sample \(sample)")
                let ga = reference.gradient(of: data.train, sample: sample, recipe: recipe)
                let gb = sequential.gradient(of: data.train, sample: sample, recipe: recipe)
                for tensor in TensorName.allCases {
                    expectClose(
                        Array(gb.gradient[tensor]), Array(ga.gradient[tensor]), absolute: 1e-5, relative: 1e-3,
                        "\(recipe) gradient \(tensor.rawValue), sample \(sample)")
                }
                #expect(abs(ga.loss - gb.loss) <= 1e-5 + 1e-4 * abs(ga.loss))
            }
        }
    }

    @Test(
        "sequential engine: a few hundred training steps stay close to the reference",
        arguments: [(Recipe.original, 1), (.modern, 8), (.original, 16)])
    func trainingAgrees(recipe: Recipe, batch: Int) throws {
        let data = try TestData.mnist()
        let p = Initialization.seeded(5).makeParameters()
        let subset = DatasetPair(train: data.train.prefix(400), test: data.test.prefix(1))
        let options = TrainingOptions(recipe: recipe, epochs: 1, batchSize: batch, seed: 5)
        let reference = ReferenceEngine(parameters: p), sequential = SequentialEngine(parameters: p)
        try Trainer(engine: reference, data: subset, options: options).run()
        try Trainer(engine: sequential, data: subset, options: options).run()
        expectClose(
            try sequential.currentParameters().values, reference.currentParameters().values,
            absolute: 1e-4, relative: 1e-3, "\(recipe) batch \(batch) parameters after 400 samples")
    }
}

@Suite("Optimizer steps follow UpdateRule's formulas", TestData.mnistTrait)
struct OptimizerStepTests {
    /// A state mid-run: seeded parameters, and moments that are not zero.
    static func midRunState() -> (Parameters, OptimizerState) {
        let p = Initialization.seeded(21).makeParameters()
        let velocity = Parameters(values: Initialization.seeded(22).makeParameters().values.map { $0 * 0.01 })
        let secondMoment = Parameters(values: Initialization.seeded(23).makeParameters().values.map { $0 * $0 * 1e-4 })
        return (p, OptimizerState(velocity: velocity, secondMoment: secondMoment))
    }

    @Test(
        "one step from a mid-run state, as the documented formulas compute it from the reference gradient",
        arguments: [Optimizer.adam, .sgd])
    func oneStep(optimizer: Optimizer) throws {
        let data = try TestData.mnist()
        let (p, state) = Self.midRunState()
        let samples = [3, 14, 15]
        var rule = UpdateRule(recipe: .modern, optimizer: optimizer, batchSize: samples.count)
        rule.step = 7

        // The expected step, written out from UpdateRule's documentation in double precision.
        let oracle = ReferenceEngine(parameters: p)
        var mean = [Double](repeating: 0, count: Parameters.count)
        for sample in samples {
            let g = oracle.gradient(of: data.train, sample: sample, recipe: .modern).gradient.values
            for i in mean.indices { mean[i] += Double(g[i]) / Double(samples.count) }
        }
        var expected = p.values.map(Double.init)
        let lr = Double(rule.learningRate), beta1 = Double(rule.momentum), beta2 = Double(UpdateRule.adamBeta2)
        for i in mean.indices {
            let m0 = Double(state.velocity!.values[i]), s0 = Double(state.secondMoment!.values[i])
            switch optimizer {
            case .sgd:
                expected[i] += lr * (beta1 * m0 + mean[i])
            case .adam:
                let m = beta1 * m0 + (1 - beta1) * mean[i], s = beta2 * s0 + (1 - beta2) * mean[i] * mean[i]
                let mHat = m / (1 - pow(beta1, 7)), sHat = s / (1 - pow(beta2, 7))
                expected[i] += lr * mHat / (sHat.squareRoot() + Double(UpdateRule.adamEpsilon))
            }
        }

        let order = samples.map { Int32($0) }
        for engine in [ReferenceEngine(parameters: p), SequentialEngine(parameters: p)] as [any Engine] {
            try engine.prepare(training: data.train)
            try engine.load(parameters: p, optimizerState: optimizer == .adam ? state : OptimizerState(velocity: state.velocity))
            try engine.trainEpoch(EpochPlan(order: order, batchSize: samples.count, rule: rule))
            // The steps taken, compared relative to the expected step (the parameters themselves
            // are far larger than a step).
            let got = try engine.currentParameters().values
            expectClose(
                got.indices.map { Float(Double(got[$0]) - Double(p.values[$0])) },
                expected.indices.map { Float(expected[$0] - Double(p.values[$0])) },
                absolute: 1e-6, relative: 1e-3, "\(engine.description) \(optimizer) step")
            let after = try engine.currentOptimizerState()
            #expect(after.velocity != nil && (after.secondMoment != nil) == (optimizer == .adam))
        }
    }

    @Test("CPU engines keep Adam's moments bit for bit alike: sequential equals threads data")
    func momentsAgree() throws {
        let data = try TestData.mnist()
        let (p, state) = Self.midRunState()
        let train = data.train.prefix(256)
        let plan = EpochPlan(order: (0..<Int32(256)).map { $0 }, batchSize: 32, rule: UpdateRule(recipe: .modern, batchSize: 32))
        var results: [OptimizerState] = []
        for engine in [SequentialEngine(parameters: p), ThreadedEngine(parameters: p, threads: 2, strategy: .data)] as [any Engine] {
            try engine.prepare(training: train)
            try engine.load(parameters: p, optimizerState: state)
            try engine.trainEpoch(plan)
            results.append(try engine.currentOptimizerState())
        }
        #expect(results[0] == results[1])
        #expect(results[0].secondMoment != state.secondMoment)
    }
}
