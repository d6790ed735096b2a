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

@Suite("Recipe: batch-dependent defaults")
struct RecipeDefaultsTests {
    @Test("modern: lr grows with B above 32 up to 0.1, and the rate halves every 1875 steps")
    func modernBatchScaling() {
        for batch in [1, 8, 32] {
            let o = TrainingOptions(recipe: .modern, batchSize: batch)
            #expect(o.rule.learningRate == 0.05 && o.learningRateDecay == 0.5)
        }
        let b64 = TrainingOptions(recipe: .modern, epochs: 3, batchSize: 64)
        #expect(b64.rule.learningRate == 0.1)
        #expect(abs(b64.learningRateDecay - Float(0.5).squareRoot()) < 1e-6)
        // Two epochs at B = 64 are 1875 steps: one halving, as one epoch at B = 32.
        #expect(abs(b64.rule(forEpoch: 2).learningRate - 0.05) < 1e-6)
        #expect(TrainingOptions(recipe: .modern, batchSize: 48).rule.learningRate == 0.075)
        #expect(TrainingOptions(recipe: .modern, batchSize: 4096).rule.learningRate == 0.1)
        let explicit = TrainingOptions(recipe: .modern, batchSize: 64, learningRate: 0.02, learningRateDecay: 0.9)
        #expect(explicit.rule.learningRate == 0.02 && explicit.learningRateDecay == 0.9)
    }

    @Test("original: lr 0.1 and no decay at every batch size")
    func originalUnchanged() {
        for batch in [1, 64, 1000] {
            let o = TrainingOptions(recipe: .original, batchSize: batch)
            #expect(o.rule.learningRate == 0.1 && o.learningRateDecay == 1)
        }
    }
}
