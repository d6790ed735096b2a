import Foundation
import Testing
import ParallelCNN

@Suite("Model: initialisation and hash")
struct ModelTests {
    @Test("glibc rand() sequence with the default seed")
    func glibcRandom() {
        var rng = GlibcRandom(seed: 1)
        // The well-known first outputs of glibc rand() without srand().
        #expect([rng.next(), rng.next(), rng.next(), rng.next()] == [1_804_289_383, 846_930_886, 1_681_692_777, 1_714_636_915])
    }

    @Test("original initialisation matches SPEC's spot values")
    func originalSpotValues() {
        let p = Initialization.original.makeParameters()
        #expect(p.values[Parameters.Offset.c1Bias] == -0.340187728)
        #expect(p.values[Parameters.Offset.c1Weight] == 0.105617076)
        #expect(p.values[Parameters.Offset.s1Weight] == 0.295344919)
        #expect(p.values[Parameters.Offset.fBias + 9] == 0.192633539)
    }

    @Test("seeded initialisation is repeatable, seed-dependent and in [-0.5, 0.5]")
    func seeded() {
        let a = Initialization.seeded(7).makeParameters(), b = Initialization.seeded(7).makeParameters()
        let c = Initialization.seeded(8).makeParameters()
        #expect(a == b)
        #expect(a != c)
        #expect(a.values.allSatisfy { $0 >= -0.5 && $0 <= 0.5 })
        #expect(Set(a.values).count > Parameters.count - 10)
    }

    @Test("tensor shapes and offsets follow SPEC's canonical order")
    func layout() {
        #expect(Parameters.count == 2343)
        #expect(TensorName.allCases.map(\.count) == [150, 6, 16, 1, 2160, 10])
        #expect(TensorName.allCases.map { Parameters.range(of: $0).lowerBound } == [0, 150, 156, 172, 173, 2333])
    }

    @Test("FNV-1a hash: known vectors and sensitivity to one bit")
    func hash() {
        // FNV-1a 64 of four zero bytes and of the bytes of 1.0f (00 00 80 3f), computed by hand
        // from the definition (h ^= byte; h *= prime).
        func fnv(_ bytes: [UInt8]) -> UInt64 {
            bytes.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        }
        var p = Parameters()
        let zeros = fnv([UInt8](repeating: 0, count: 4 * Parameters.count))
        #expect(p.hash == zeros)
        p.values[0] = 1
        #expect(p.hash == fnv([0, 0, 0x80, 0x3f] + [UInt8](repeating: 0, count: 4 * (Parameters.count - 1))))
        #expect(p.hashString.count == 16)
    }
}

@Suite("Recipe: optimizer and batch-dependent defaults")
struct RecipeDefaultsTests {
    @Test("modern: Adam by default, lr 0.03, beta1 0.9, decay 0.4 at every batch size")
    func modernAdam() {
        for batch in [1, 8, 32, 64, 4096] {
            let o = TrainingOptions(recipe: .modern, batchSize: batch)
            #expect(o.rule.optimizer == .adam && o.rule.usesVelocity && o.rule.usesSecondMoment)
            #expect(o.rule.learningRate == 0.03 && o.rule.momentum == 0.9 && o.learningRateDecay == 0.4)
        }
        let explicit = TrainingOptions(recipe: .modern, batchSize: 64, learningRate: 0.02, momentum: 0.8, learningRateDecay: 0.9)
        #expect(explicit.rule.learningRate == 0.02 && explicit.rule.momentum == 0.8 && explicit.learningRateDecay == 0.9)
    }

    @Test("modern with --optimizer sgd: lr grows with B above 32 up to 0.1, and the rate halves every 1875 steps")
    func modernMomentumBatchScaling() {
        for batch in [1, 8, 32] {
            let o = TrainingOptions(recipe: .modern, optimizer: .sgd, batchSize: batch)
            #expect(o.rule.learningRate == 0.05 && o.rule.momentum == 0.9 && o.learningRateDecay == 0.5)
            #expect(o.rule.usesVelocity && !o.rule.usesSecondMoment)
        }
        let b64 = TrainingOptions(recipe: .modern, optimizer: .sgd, epochs: 3, batchSize: 64)
        #expect(b64.rule.learningRate == 0.1)
        #expect(abs(b64.learningRateDecay - Float(0.5).squareRoot()) < 1e-6)
        // Two epochs at B = 64 are 1875 steps: one halving, as one epoch at B = 32.
        #expect(abs(b64.rule(forEpoch: 2, samples: 60000).learningRate - 0.05) < 1e-6)
        #expect(TrainingOptions(recipe: .modern, optimizer: .sgd, batchSize: 48).rule.learningRate == 0.075)
        #expect(TrainingOptions(recipe: .modern, optimizer: .sgd, batchSize: 4096).rule.learningRate == 0.1)
    }

    @Test("original: SGD, lr 0.1 and no decay at every batch size; Adam on request")
    func originalUnchanged() {
        for batch in [1, 64, 1000] {
            let o = TrainingOptions(recipe: .original, batchSize: batch)
            #expect(o.rule.optimizer == .sgd && o.rule.learningRate == 0.1 && o.learningRateDecay == 1)
            #expect(o.rule.usesVelocity == (batch > 1) && !o.rule.usesSecondMoment)
        }
        let adam = TrainingOptions(recipe: .original, optimizer: .adam, batchSize: 16)
        #expect(adam.rule.learningRate == 0.03 && adam.learningRateDecay == 0.4 && adam.rule.usesSecondMoment)
    }

    @Test("each epoch's rule numbers its first step over the whole run, a short last batch included")
    func stepNumbers() {
        let o = TrainingOptions(recipe: .modern, batchSize: 64)
        // 1000 samples in steps of 64: 15 full steps and one of 40.
        #expect(o.rule(forEpoch: 0, samples: 1000).step == 1)
        #expect(o.rule(forEpoch: 1, samples: 1000).step == 17)
        #expect(o.rule(forEpoch: 3, samples: 1000).step == 49)
        let plan = EpochPlan(order: (0..<1000).map { Int32($0) }, batchSize: 64, rule: o.rule(forEpoch: 1, samples: 1000))
        #expect(plan.rule(at: 0).step == 17 && plan.rule(at: 64).step == 18 && plan.rule(at: 960).step == 32)
    }

    @Test("Adam's bias corrections: a = lr / (1 - beta1^t), c = 1 / sqrt(1 - beta2^t)")
    func adamFactors() {
        var rule = UpdateRule(recipe: .modern, optimizer: .adam, learningRate: 0.03, momentum: 0.9)
        // In double precision from the float settings, rounded once.
        let lr = Double(Float(0.03)), beta1 = Double(Float(0.9)), beta2 = Double(UpdateRule.adamBeta2)
        rule.step = 1
        #expect(rule.adamFactors.stepSize == Float(lr / (1 - beta1)))
        #expect(rule.adamFactors.secondMomentFactor == Float(1 / (1 - beta2).squareRoot()))
        rule.step = 3
        #expect(rule.adamFactors.stepSize == Float(lr / (1 - pow(beta1, 3))))
        #expect(rule.adamFactors.secondMomentFactor == Float(1 / (1 - pow(beta2, 3)).squareRoot()))
        #expect(abs(rule.adamFactors.stepSize - 0.03 / 0.271) < 1e-6)
        // Late in a run both corrections vanish.
        rule.step = 100_000
        #expect(rule.adamFactors.stepSize == 0.03 && rule.adamFactors.secondMomentFactor == 1)
    }
}
