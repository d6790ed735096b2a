import ParallelCNN
import Foundation

/// This machine's float32 peak, measured by a loop of independent fused multiply-adds: what
/// "% of peak" divides by.
public struct PeakFLOPS: Codable, Sendable, Equatable {
    /// GFLOP/s of one thread on one core.
    public var perCoreGFLOPS: Double
    /// GFLOP/s of one thread on every core at once.
    public var allCoresGFLOPS: Double
    public var cores: Int
    /// Lanes of the vectors of the loop that reached the peak.
    public var lanes: Int
    /// How it was measured.
    public var method: String

    public init(perCoreGFLOPS: Double, allCoresGFLOPS: Double, cores: Int, lanes: Int, method: String) {
        self.perCoreGFLOPS = perCoreGFLOPS
        self.allCoresGFLOPS = allCoresGFLOPS
        self.cores = cores
        self.lanes = lanes
        self.method = method
    }

    /// The peak of `n` cores: measured for one and for all, linear in between.
    public func gflops(cores n: Int) -> Double {
        n >= cores ? allCoresGFLOPS : perCoreGFLOPS * Double(max(1, n))
    }

    /// Measures the peak: `seconds` of FMAs on one thread, then on one thread per core.
    public static func measure(seconds: Double = 0.25, cores: Int = EngineRegistry.availableCores) -> PeakFLOPS {
        // Warm up the clocks and pick the widest vector that is fast here.
        _ = fmaLoop8(iterations: 200_000)
        _ = fmaLoop16(iterations: 200_000)
        // Rounds of both widths in turn, each width its best: a shared machine only ever slows a
        // loop down, and a slow spell must not pick the wrong width or lower the peak (which would
        // inflate every "of peak" figure).
        var rate8 = 0.0, rate16 = 0.0
        for _ in 0..<4 {
            rate8 = max(rate8, rate(seconds: seconds / 8, lanes: 8, loop: fmaLoop8))
            rate16 = max(rate16, rate(seconds: seconds / 8, lanes: 16, loop: fmaLoop16))
        }
        let (perCore, lanes, loop): (Double, Int, @Sendable (Int) -> Float) =
            rate16 > rate8 * 1.05
            ? (rate16, 16, fmaLoop16) : (rate8, 8, fmaLoop8)
        var allCores = perCore
        if cores > 1 {
            let runs = 8
            let iterations = max(1, Int(perCore * seconds / Double(runs) / flopsPerIteration(lanes: lanes)))
            // One dedicated thread per core (concurrentPerform may run chunks one after
            // another on the caller); the wall time of all of them is what counts. The best of
            // many short runs: every core must be quiet at once, rarer than one being quiet, and
            // a low all-cores peak would inflate every multi-core "of peak" figure.
            var wall = Double.infinity
            for _ in 0..<runs {
                let done = DispatchSemaphore(value: 0)
                let began = Trainer.now()
                for _ in 0..<cores {
                    Thread {
                        if loop(iterations).isNaN { print("") }
                        done.signal()
                    }.start()
                }
                for _ in 0..<cores { done.wait() }
                wall = min(wall, Trainer.now() - began)
            }
            allCores = Double(cores) * Double(iterations) * flopsPerIteration(lanes: lanes) / wall
        }
        return PeakFLOPS(
            perCoreGFLOPS: perCore / 1e9, allCoresGFLOPS: allCores / 1e9, cores: cores, lanes: lanes,
            method: "\(accumulators) independent \(lanes)-lane float32 FMA chains, \(String(format: "%.2f", seconds)) s per core count")
    }

    private static let accumulators = 12

    private static func flopsPerIteration(lanes: Int) -> Double { Double(2 * lanes * accumulators) }

    /// FLOP/s of `loop` (of `lanes`-lane vectors) run for about `seconds`: the best of three
    /// runs at a length calibrated to a quarter of it.
    private static func rate(seconds: Double, lanes: Int, loop: (Int) -> Float) -> Double {
        var iterations = 100_000
        while true {
            let began = Trainer.now()
            _ = loop(iterations)
            let elapsed = Trainer.now() - began
            if elapsed >= seconds / 4 || iterations > 1 << 34 {
                var best = elapsed
                for _ in 0..<3 {
                    let again = Trainer.now()
                    _ = loop(iterations)
                    best = min(best, Trainer.now() - again)
                }
                return Double(iterations) * flopsPerIteration(lanes: lanes) / best
            }
            iterations *= 2
        }
    }

    /// `iterations` rounds of 12 independent 8-lane FMAs; returns the sum of the results so the
    /// loop is not optimised away.
    @inline(never)
    static func fmaLoop8(iterations: Int) -> Float {
        let m = Vec(repeating: 0.999_999), a = Vec(repeating: 1e-7)
        var x0 = Vec(repeating: 1), x1 = x0 + 1, x2 = x0 + 2, x3 = x0 + 3, x4 = x0 + 4, x5 = x0 + 5
        var x6 = x0 + 6, x7 = x0 + 7, x8 = x0 + 8, x9 = x0 + 9, x10 = x0 + 10, x11 = x0 + 11
        // `a + x · m` through the standard library, which inlines here; the library's `fma` is
        // not inlinable across modules, and a call per vector measured 86 instead of 100 GFLOP/s
        // on a 2-core AMD EPYC (AVX2), whose 16-lane loop spills its 24 halves.
        for _ in 0..<iterations {
            x0 = a.addingProduct(x0, m); x1 = a.addingProduct(x1, m); x2 = a.addingProduct(x2, m)
            x3 = a.addingProduct(x3, m); x4 = a.addingProduct(x4, m); x5 = a.addingProduct(x5, m)
            x6 = a.addingProduct(x6, m); x7 = a.addingProduct(x7, m); x8 = a.addingProduct(x8, m)
            x9 = a.addingProduct(x9, m); x10 = a.addingProduct(x10, m); x11 = a.addingProduct(x11, m)
        }
        return (x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11).total
    }

    /// As `fmaLoop8` on 16-lane vectors (one 512-bit instruction each where the target has them).
    @inline(never)
    static func fmaLoop16(iterations: Int) -> Float {
        typealias V = SIMD16<Float>
        let m = V(repeating: 0.999_999), a = V(repeating: 1e-7)
        var x0 = V(repeating: 1), x1 = x0 + 1, x2 = x0 + 2, x3 = x0 + 3, x4 = x0 + 4, x5 = x0 + 5
        var x6 = x0 + 6, x7 = x0 + 7, x8 = x0 + 8, x9 = x0 + 9, x10 = x0 + 10, x11 = x0 + 11
        // `a + x · m`: one FMA per vector where the target has FMA.
        for _ in 0..<iterations {
            x0 = a.addingProduct(x0, m); x1 = a.addingProduct(x1, m); x2 = a.addingProduct(x2, m)
            x3 = a.addingProduct(x3, m); x4 = a.addingProduct(x4, m); x5 = a.addingProduct(x5, m)
            x6 = a.addingProduct(x6, m); x7 = a.addingProduct(x7, m); x8 = a.addingProduct(x8, m)
            x9 = a.addingProduct(x9, m); x10 = a.addingProduct(x10, m); x11 = a.addingProduct(x11, m)
        }
        let s = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11
        return (s.lowHalf + s.highHalf).total
    }
}
