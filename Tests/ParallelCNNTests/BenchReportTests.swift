import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import ParallelCNN
import ParallelCNNBench

/// Every element of an SVG that carries a plotted value, with its attributes.
final class PlottedValues: NSObject, XMLParserDelegate {
    var elements: [(name: String, attributes: [String: String])] = []
    var root: String?

    func parser(
        _ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:]
    ) {
        if root == nil { root = name }
        if attributes["data-value"] != nil { elements.append((name, attributes)) }
    }

    /// Parses `svg`; nil with the parser's error when it is not well-formed XML.
    static func parse(_ svg: String) -> (PlottedValues?, String?) {
        let parser = XMLParser(data: Data(svg.utf8))
        let values = PlottedValues()
        parser.delegate = values
        return parser.parse() ? (values, nil) : (nil, parser.parserError.map { "\($0)" } ?? "unknown XML error")
    }
}

/// A results object built from given timings (no measuring), with rows of every kind a bench
/// writes plus a GPU engine's, to check the writers and charts against their own JSON.
enum SampleResults {
    static func make(gpu: Bool, mpi: Bool = true) -> BenchmarkResults {
        let machine = MachineInfo(
            cpuModel: "Test CPU <&>", cores: 2, vectorBits: 512, vectorExtension: "AVX-512", memoryGiB: 8,
            os: "TestOS", swiftVersion: "6.3", pcnnVersion: "0.1.0", commit: "abc", mpiBuilt: mpi, build: "release")
        let settings = BenchmarkSuite.settings(full: false, epochSamples: 60_000, cores: 2)
        var r = BenchmarkResults(
            machine: machine, settings: settings,
            peak: PeakFLOPS(perCoreGFLOPS: 80, allCoresGFLOPS: 150, cores: 2, lanes: 16, method: "test"),
            date: "2026-01-01T00:00:00Z")
        var seed: UInt64 = 12345
        func noisy(_ base: Double) -> [Double] {
            (0..<5).map { _ in
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                return base * (1 + Double(seed >> 40) / Double(1 << 24) * 0.1)
            }
        }
        func row(
            _ t: BenchmarkTable, _ e: String, strategy s: String = "-", w: Int = 1, b: Int = 1, phase: LayerPhase = .network,
            samples: Int = 10_000, base: Double
        ) -> BenchmarkMeasurement {
            BenchmarkMeasurement(
                table: t, engine: e, strategy: s, workers: w, batch: b, phase: phase, samples: samples,
                epochSamples: 60_000, warmupPasses: 1, seconds: noisy(base))
        }
        let reference = row(.sequential, "reference", samples: 1000, base: 0.27)
        r.add(reference)
        let sequential = row(.sequential, "sequential", base: 0.09)
        r.add(sequential, baseline: reference)
        var referencePhases: [LayerPhase: BenchmarkMeasurement] = [:]
        for (engine, samples, scale) in [("reference", 1000, 0.27), ("sequential", 10_000, 0.09)] {
            for (k, phase) in (LayerPhase.parts + [.network]).enumerated() {
                let m = row(.layers, engine, phase: phase, samples: samples, base: phase == .network ? scale : scale * Double(k + 1) / 28)
                if engine == "reference" { referencePhases[phase] = m }
                r.add(m, baseline: engine == "reference" ? nil : referencePhases[phase])
            }
        }
        let batched = row(.threads, "sequential", b: 64, base: 0.1)
        r.add(batched)
        for (table, engine) in [(BenchmarkTable.threads, "threads")] + (mpi ? [(.mpi, "mpi")] : []) {
            for (strategy, baseline) in [("layer", sequential), ("data", batched)] {
                for w in [1, 2, 4] {
                    r.add(
                        row(table, engine, strategy: strategy, w: w, b: baseline.batch, base: 0.1 / Double(w) + 0.02 * Double(w)),
                        baseline: baseline)
                }
            }
        }
        if !mpi { r.skipped["T2"] = "mpirun was not found" }
        if gpu {
            // What a GPU engine adds: whole-network and per-phase rows, compared with sequential.
            r.add(row(.gpu, "cuda", w: 27_776, base: 0.004), baseline: sequential, cpu: false)
            for phase in LayerPhase.parts {
                r.add(
                    row(.layers, "cuda", w: 3456, phase: phase, base: 0.0005),
                    baseline: r.measurement(id: "T4/sequential/-/w1/b1/\(phase.rawValue)"), cpu: false)
            }
        } else {
            r.skipped["T5-8"] = "no GPU engine in this build"
        }
        return r
    }
}

@Suite("pcnn bench report and charts")
struct BenchReportTests {
    @Test("every chart is well-formed SVG and each plotted value is the one in results.json", arguments: [false, true])
    func chartsMatchJSON(gpu: Bool) throws {
        let results = SampleResults.make(gpu: gpu)
        try TestData.withTemporaryDirectory { dir in
            let files = try BenchmarkReport.write(results, to: dir, command: "pcnn bench --out test")
            #expect(files.contains("report.md") && files.contains("results.csv") && files.contains("results.json"))
            let decoded = try BenchmarkReport.decode(json: Data(contentsOf: dir.appendingPathComponent("results.json")))
            #expect(decoded == results)
            let charts = files.filter { $0.hasSuffix(".svg") }
            #expect(Set(charts) == Set(["speedup.svg", "layers.svg", "epoch.svg"] + (gpu ? ["speedup-gpu.svg"] : [])))
            var plottedIDs: Set<String> = []
            for name in charts {
                let svg = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
                let (parsed, error) = PlottedValues.parse(svg)
                let values = try #require(parsed, "\(name) is not well-formed XML: \(error ?? "")")
                #expect(values.root == "svg", "\(name)")
                #expect(!values.elements.isEmpty, "\(name) plots nothing")
                for (element, attributes) in values.elements {
                    let drawn = try #require(Double(attributes["data-value"]!), "\(name): data-value \(attributes["data-value"]!)")
                    if let id = attributes["data-id"] {
                        let row = try #require(decoded.measurement(id: id), "\(name): \(id) is not in results.json")
                        let expected: Double? =
                            switch attributes["data-field"] {
                            case "speedup": row.speedup
                            case "secondsPerEpoch": row.secondsPerEpoch
                            default: nil
                            }
                        #expect(drawn == expected, "\(name) \(element) \(id) \(attributes["data-field"] ?? "")")
                        plottedIDs.insert(id)
                    } else {
                        let key = try #require(attributes["data-paper"], "\(name): a value with no source")
                        let paper = try #require(decoded.paper.value(key), "\(name): unknown paper key \(key)")
                        let scale = attributes["data-scale"].flatMap(Double.init) ?? 1
                        #expect(abs(drawn - paper * scale) <= 1e-12 * abs(paper * scale), "\(name) paper \(key)")
                    }
                }
            }
            // Every speed-up and every phase was drawn.
            for row in decoded.measurements where row.speedup != nil && [.threads, .mpi, .gpu].contains(row.table) {
                #expect(plottedIDs.contains(row.id), "\(row.id) is missing from the charts")
            }
            for row in decoded.rows(.layers) where row.phase != .network {
                #expect(plottedIDs.contains(row.id), "\(row.id) is missing from layers.svg")
            }
        }
    }

    /// With `PCNN_KEEP_CHARTS=DIR`, writes the sample run's files (GPU rows included) there, to
    /// look at the charts in a browser.
    @Test("sample charts for viewing", .enabled(if: ProcessInfo.processInfo.environment["PCNN_KEEP_CHARTS"] != nil))
    func keepCharts() throws {
        let directory = URL(fileURLWithPath: ProcessInfo.processInfo.environment["PCNN_KEEP_CHARTS"]!)
        let files = try BenchmarkReport.write(SampleResults.make(gpu: true), to: directory, command: "sample")
        #expect(files.contains("speedup-gpu.svg"))
    }

    @Test("stacked bars: each segment's height is its share of its engine's epoch")
    func layerBarsProportional() throws {
        let results = SampleResults.make(gpu: true)
        let (parsed, _) = PlottedValues.parse(BenchmarkCharts.layers(results))
        let values = try #require(parsed)
        let rects = values.elements.filter { $0.name == "rect" }
        for series in Set(rects.compactMap { $0.attributes["data-series"] }) {
            let segments = rects.filter { $0.attributes["data-series"] == series }
            let total = segments.map { Double($0.attributes["data-value"]!)! }.reduce(0, +)
            let heights = segments.map { Double($0.attributes["height"]!)! }
            let plotHeight = heights.reduce(0, +)
            for (segment, height) in zip(segments, heights) {
                let share = Double(segment.attributes["data-value"]!)! / total
                #expect(abs(height / plotHeight - share) < 1e-9, "\(series) \(segment.attributes["data-segment"] ?? "")")
            }
        }
    }

    @Test("CSV: a header and one line per measurement with every field; JSON round-trips")
    func csvRows() throws {
        let results = SampleResults.make(gpu: true)
        let lines = BenchmarkReport.csv(results).split(separator: "\n")
        #expect(lines.count == results.measurements.count + 1)
        let columns = lines[0].split(separator: ",").count
        #expect(columns >= 20)
        for (line, row) in zip(lines.dropFirst(), results.measurements) {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            #expect(fields.count == columns, "\(line)")
            #expect(fields.first.map(String.init) == row.id)
            #expect(fields[11].split(separator: ";").compactMap { Double($0) } == row.seconds)
        }
    }

    @Test("report.md: every table with the paper's figures, machine, skip reasons, charts")
    func markdown() {
        let text = BenchmarkReport.markdown(SampleResults.make(gpu: false, mpi: false), command: "pcnn bench --out x")
        for heading in ["## Machine", "## T1", "## T2", "## T3", "## T4", "## T5–T8", "## Achieved compute", "## Charts"] {
            #expect(text.contains(heading), "missing \(heading)")
        }
        #expect(text.contains("`pcnn bench --out x`"))
        #expect(text.contains("102.3 s"), "paper's Table 1")
        #expect(text.contains("2.72x"), "paper's Table 3")
        #expect(text.contains("97.70 s"), "paper's Table 4, c1")
        #expect(text.contains("Skipped: mpirun was not found."))
        #expect(text.contains("Skipped: no GPU engine in this build."))
        #expect(text.contains("Test CPU <&>, 2 cores, AVX-512 (512-bit vectors)"))
    }

    @Test("a GPU engine's rows appear in the tables without changes to the writers")
    func gpuRows() {
        let text = BenchmarkReport.markdown(SampleResults.make(gpu: true), command: "pcnn bench")
        #expect(text.contains("| cuda | - | network | 27776 |"))
        #expect(text.contains("cuda forward"), "the per-layer table has a cuda column")
    }

    @Test("mpirun options: root permission as root, oversubscription beyond the cores")
    func launcherOptions() {
        let request = { (ranks: Int) in
            MPIRequest(strategy: .data, ranks: ranks, batch: 64, samples: 100, repeats: 1, warmupPasses: 0, warmupSamples: 0)
        }
        #expect(request(2).launcherOptions(cores: 2, root: false) == ["-np", "2"])
        #expect(request(4).launcherOptions(cores: 2, root: true) == ["--allow-run-as-root", "--oversubscribe", "-np", "4"])
        #expect(request(2).launcherOptions(cores: 2, root: true) == ["--allow-run-as-root", "-np", "2"])
    }

    @Test("median, spread and per-epoch scaling of a measurement")
    func statistics() {
        let m = BenchmarkMeasurement(
            table: .sequential, engine: "e", samples: 1000, epochSamples: 60_000, warmupPasses: 1,
            seconds: [3, 1, 2, 5])
        #expect(m.secondsMin == 1 && m.secondsMax == 5 && m.secondsMedian == 2.5)
        #expect(m.spread == 4 / 2.5)
        #expect(m.secondsPerEpoch == 2.5 * 60)
        #expect(m.gflops == FLOPCount.trainingSample * 1000 / 2.5 / 1e9)
    }
}
