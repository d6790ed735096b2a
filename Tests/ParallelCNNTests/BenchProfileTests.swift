import Foundation
import Testing
import ParallelCNN
import ParallelCNNBench

@Suite("pcnn bench measurements", .serialized, TestData.mnistTrait)
struct BenchProfileTests {
    @Test("the sequential per-layer profile is the engine's computation: same parameters, bit for bit")
    func sequentialProfile() throws {
        let data = try TestData.mnist().train
        let start = Initialization.original.makeParameters()
        let (phases, reached) = LayerProfile.sequentialPass(data: data, samples: 300, start: start)
        let (_, engine) = try Benchmark.passes(
            SequentialEngine(parameters: start), data: data, samples: 300, batch: 1, repeats: 1,
            warmupPasses: 0, start: start)
        #expect(reached == engine)
        #expect(reached != start)
        #expect(Set(phases.keys) == Set(LayerPhase.parts))
        #expect(phases.values.allSatisfy { $0 > 0 })
    }

    @Test("the reference per-layer profile (lap hook) changes nothing: same parameters as the plain engine")
    func referenceProfile() throws {
        let data = try TestData.mnist().train
        let start = Initialization.original.makeParameters()
        let (phases, reached) = LayerProfile.referencePass(data: data, samples: 30, start: start)
        let (_, engine) = try Benchmark.passes(
            ReferenceEngine(parameters: start), data: data, samples: 30, batch: 1, repeats: 1,
            warmupPasses: 0, start: start)
        #expect(reached == engine)
        #expect(Set(phases.keys) == Set(LayerPhase.parts))
        #expect(phases.values.allSatisfy { $0 > 0 })
        // The reference engine's c1 dominates its step (SPEC: 86400 multiply-adds each way).
        #expect(phases[.c1Forward]! > phases[.fForward]!)
    }

    @Test("a small suite run fills T1, T3 and T4, says why T2 and T5-8 are missing, and writes every file")
    func suite() throws {
        let data = try TestData.mnist().train
        let machine = MachineInfo.current(pcnnVersion: "test", sourceDirectory: TestData.packageRoot.path)
        var suite = BenchmarkSuite(
            settings: BenchmarkSuite.settings(
                full: false, epochSamples: data.count, samples: 128,
                referenceSamples: 8, repeats: 2, cores: 2),
            machine: machine)
        suite.peakSeconds = 0.05
        suite.mpiSkipReason = "not in this test"
        let results = try suite.run(data: data)
        #expect(results.rows(.sequential).map(\.engine) == ["reference", "sequential"])
        #expect(results.rows(.layers).count == 2 * (LayerPhase.parts.count + 1))
        #expect(results.rows(.threads).filter { $0.engine == "threads" }.count == 2 * results.settings.threadCounts.count)
        #expect(results.skipped["T2"] == "not in this test")
        // With a device engine available (PoCL on CI), T5-8 has rows instead of a reason.
        if EngineRegistry.engines.contains(where: { $0.takesDevice && $0.availability().isAvailable }) {
            #expect(!results.rows(.gpu).isEmpty)
        } else {
            #expect(results.skipped["T5-8"] != nil)
        }
        #expect(results.peak.perCoreGFLOPS > 0 && results.peak.allCoresGFLOPS > 0)
        for row in results.measurements {
            #expect(row.seconds.count == 2)
            #expect(row.secondsPerEpoch > 0)
            if row.table == .threads && row.engine == "threads" {
                #expect(row.speedup != nil && row.baseline != nil)
                // Both strategies reproduce sequential at the same batch bit for bit.
                #expect(row.note == "parameters equal sequential's", "\(row.id)")
            }
        }
        try TestData.withTemporaryDirectory { dir in
            let files = try BenchmarkReport.write(results, to: dir, command: "test")
            for file in files { #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path)) }
        }
    }

    @Test("pcnn bench --json --out: the results object on stdout, the files written, T2 skipped in one line without mpirun")
    func commandLine() throws {
        let data = try TestData.requireMNISTDirectory()
        try TestData.withTemporaryDirectory { dir in
            let result = try CLI.run([
                "bench", "--data", data, "--samples", "64", "--reference-samples", "4", "--repeats", "1",
                "--mpirun", "/nonexistent/mpirun", "--json", "--out", dir.path
            ])
            #expect(result.status == 0, "\(result.output)")
            // Standard output and error come mixed: the pretty-printed object spans "{" ... "}" lines.
            let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
            let first = try #require(lines.firstIndex(of: "{"), "\(result.output)")
            let last = try #require(lines.lastIndex(of: "}"), "\(result.output)")
            let decoded = try BenchmarkReport.decode(json: Data(lines[first...last].joined(separator: "\n").utf8))
            #expect(decoded.settings.samples == 64)
            let skipLines = result.output.split(separator: "\n").filter { $0.hasPrefix("T2 skipped:") }
            #expect(skipLines.count == 1, "\(result.output)")
            for file in ["report.md", "results.csv", "results.json", "speedup.svg", "layers.svg", "epoch.svg"] {
                #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), "\(file)")
            }
        }
    }
}
