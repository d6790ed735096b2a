import ParallelCNN
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Shape letters (SPEC.md).
private let C = Network.channels  // 6 feature maps
private let K1 = Network.convKernel  // 5x5 c1 kernel
private let H1 = Network.convSide  // 24x24 c1 output
private let K2 = Network.poolKernel  // 4x4 s1 kernel
private let H2 = Network.poolSide  // 6x6 s1 output
private let S = Network.poolOutputs  // 216 s1 outputs
private let O = Network.classes  // 10 outputs

/// The paper's Table 4, measured the honest way: the time each layer's kernels take inside a
/// real training run (original recipe, batch 1, file order), with a clock read between layers,
/// instead of training one-layer networks.
///
/// Each profiled run is checked to end at the same parameters, bit for bit, as the unprofiled
/// engine on the same samples, so what is timed is the engine's own computation.
public enum LayerProfile {
    /// Seconds per phase of one profiled pass over `samples` samples.
    public typealias PhaseSeconds = [LayerPhase: Double]

    /// Nanoseconds on the monotonic clock (a vDSO call, about 20 ns: 8 reads per sample of the
    /// sequential engine's ~9 µs are under 2% of it).
    @inline(__always) static func nanoseconds() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    /// One pass of the sequential engine's training step over the first `samples` samples of
    /// `data` from `start`: the same `SampleWorkspace` kernels, in the same order and ranges, as
    /// `SequentialEngine` and `ThreadedEngine`'s layer strategy call, then `ParameterState.apply`.
    /// Returns each phase's seconds and the parameters reached.
    public static func sequentialPass(data: Dataset, samples: Int, start: Parameters) -> (PhaseSeconds, Parameters) {
        let state = ParameterState(start)
        let w = SampleWorkspace()
        let rule = UpdateRule(recipe: .original)
        var spent = [UInt64](repeating: 0, count: LayerPhase.parts.count)
        data.withImagePixels { images in
            data.labels.withUnsafeBufferPointer { labels in
                spent.withUnsafeMutableBufferPointer { spent in
                    let base = images
                    for sample in 0..<min(samples, data.count) {
                        let label = Int(labels[sample]), p = UnsafePointer(state.values)
                        let t0 = nanoseconds()
                        w.loadImage(base, sample: sample)
                        w.convForward(p, rows: 0..<H1)
                        let t1 = nanoseconds()
                        w.subsampleForward(p, pairs: 0..<(C * H2))
                        let t2 = nanoseconds()
                        w.denseForward(p, outputs: 0..<O)
                        w.fActivate(recipe: .original)
                        let t3 = nanoseconds()
                        // The engine's statistics (prediction, loss) belong to the output layer.
                        _ = w.predictedClass
                        _ = w.outputError(label: label, recipe: .original)
                        w.denseBackward(outputs: 0..<O)
                        let t4 = nanoseconds()
                        w.denseBackwardInput(p, chunks: 0..<(S / 8))
                        w.subsampleBackward(kernelRows: 0..<K2, includeBias: true)
                        let t5 = nanoseconds()
                        w.subsampleBackwardInput(p, pairs: 0..<(C * H2))
                        w.convBackward(items: 0..<(C * K1))
                        w.finishConvBackward(items: 0..<(C * K1))
                        let t6 = nanoseconds()
                        // A batch of one: the engine applies the sample's gradient where it lies.
                        state.apply(gradientSum: w.grad, batchSize: 1, rule: rule)
                        let t7 = nanoseconds()
                        spent[0] &+= t1 - t0; spent[1] &+= t2 - t1; spent[2] &+= t3 - t2; spent[3] &+= t4 - t3
                        spent[4] &+= t5 - t4; spent[5] &+= t6 - t5; spent[6] &+= t7 - t6
                    }
                }
            }
        }
        return (seconds(spent), state.parameters)
    }

    /// One pass of `ReferenceEngine.trainStep` (batch 1) over the first `samples` samples of `data`
    /// from `start`, its phases timed by the engine's `lap` hook. Returns each phase's seconds and
    /// the parameters reached.
    public static func referencePass(data: Dataset, samples: Int, start: Parameters) -> (PhaseSeconds, Parameters) {
        let engine = ReferenceEngine(parameters: start)
        let rule = UpdateRule(recipe: .original)
        var spent = [UInt64](repeating: 0, count: LayerPhase.parts.count)
        var last: UInt64 = 0
        let slot = Dictionary(uniqueKeysWithValues: LayerPhase.parts.enumerated().map { ($1, $0) })
        engine.lap = { phase in
            let now = nanoseconds()
            spent[slot[phase]!] &+= now - last
            last = now
        }
        var index: Int32 = 0
        for sample in 0..<min(samples, data.count) {
            index = Int32(sample)
            last = nanoseconds()
            _ = withUnsafePointer(to: &index) { engine.trainStep(UnsafeBufferPointer(start: $0, count: 1), of: data, rule: rule) }
        }
        engine.lap = nil
        return (seconds(spent), engine.currentParameters())
    }

    private static func seconds(_ spent: [UInt64]) -> PhaseSeconds {
        Dictionary(uniqueKeysWithValues: LayerPhase.parts.enumerated().map { ($1, Double(spent[$0]) / 1e9) })
    }
}
