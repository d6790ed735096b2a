import ParallelCNN
import Foundation

/// Writes a bench run as `report.md`, `results.csv`, `results.json` and SVG charts. Tables are
/// built from whatever rows are present, so new engines need no change here.
public enum BenchmarkReport {
    /// Writes every file into `directory` (created if needed); returns their names.
    @discardableResult
    public static func write(_ results: BenchmarkResults, to directory: URL, command: String) throws -> [String] {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var files: [(String, String)] = [
            ("report.md", markdown(results, command: command)),
            ("results.csv", csv(results)),
            ("results.json", try json(results))
        ]
        files += BenchmarkCharts.all(results)
        for (name, text) in files {
            try Data(text.utf8).write(to: directory.appendingPathComponent(name), options: .atomic)
        }
        return files.map(\.0)
    }

    // MARK: JSON and CSV

    public static func json(_ results: BenchmarkResults) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(results), as: UTF8.self) + "\n"
    }

    public static func decode(json: Data) throws -> BenchmarkResults {
        try JSONDecoder().decode(BenchmarkResults.self, from: json)
    }

    static let csvColumns = [
        "id", "table", "engine", "strategy", "workers", "batch", "phase", "samples", "epoch_samples", "warmup_passes",
        "repeats", "seconds", "seconds_min", "seconds_median", "seconds_max", "spread", "seconds_per_epoch", "baseline",
        "speedup", "efficiency", "flops_per_sample", "gflops", "percent_of_core_peak", "percent_of_used_cores_peak", "note"
    ]

    /// One line per measurement, every field; the repeats' seconds joined by `;`.
    public static func csv(_ results: BenchmarkResults) -> String {
        func field(_ s: String) -> String {
            s.contains(",") || s.contains("\"") || s.contains("\n") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        func optional(_ v: Double?) -> String { v.map { "\($0)" } ?? "" }
        var lines = [csvColumns.joined(separator: ",")]
        for r in results.measurements {
            let values: [String] = [
                r.id, r.table.rawValue, r.engine, r.strategy, "\(r.workers)", "\(r.batch)", r.phase.rawValue, "\(r.samples)",
                "\(r.epochSamples)", "\(r.warmupPasses)", "\(r.seconds.count)", r.seconds.map { "\($0)" }.joined(separator: ";"),
                "\(r.secondsMin)", "\(r.secondsMedian)", "\(r.secondsMax)", "\(r.spread)", "\(r.secondsPerEpoch)", r.baseline ?? "",
                optional(r.speedup), optional(r.efficiency), "\(r.flopsPerSample)", "\(r.gflops)", optional(r.percentOfCorePeak),
                optional(r.percentOfUsedCoresPeak), r.note
            ]
            lines.append(values.map(field).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: Markdown

    /// The report: machine, method, the paper's eight tables with ours beside them, achieved
    /// compute, charts.
    public static func markdown(_ results: BenchmarkResults, command: String) -> String {
        let m = results.machine, s = results.settings, p = results.paper, peak = results.peak
        var out: [String] = []
        out.append("# The paper's results, reproduced on this machine")
        out.append("")
        out.append("Produced by `\(command)` (\(s.mode) mode) on \(results.date). Figures compare only within this run.")
        out.append("")
        out.append("## Machine")
        out.append("")
        out.append("| | |")
        out.append("|---|---|")
        out.append("| CPU | \(m.cpuModel), \(m.cores) cores, \(m.vectorExtension) (\(m.vectorBits)-bit vectors) |")
        out.append(String(format: "| memory | %.1f GiB |", m.memoryGiB))
        out.append("| OS | \(m.os) |")
        out.append("| Swift | \(m.swiftVersion) |")
        out.append("| pcnn | \(m.pcnnVersion), commit \(m.commit), \(m.build) build, MPI engine \(m.mpiBuilt ? "built" : "not built") |")
        out.append("| date | \(results.date) |")
        if let load = m.loadAverage {
            out.append(
                String(
                    format: "| load average at start | %.2f on %d cores%@ |", load, m.cores,
                    load > Double(m.cores) * 0.5 ? " (other processes were busy: parallel figures are disturbed most)" : ""))
        }
        out.append(
            String(
                format: "| peak (float32) | %.1f GFLOP/s on one core, %.1f GFLOP/s on all %d cores (%@) |",
                peak.perCoreGFLOPS, peak.allCoresGFLOPS, peak.cores, peak.method))
        out.append("")
        out.append("## How it was measured")
        out.append("")
        let prefix =
            s.mode == "full"
            ? "whole epochs (\(s.epochSamples) samples; the reference engine \(s.referenceSamples))"
            : "the first \(s.samples) of the \(s.epochSamples) training samples (the reference engine: the first \(s.referenceSamples)), scaled to a whole epoch"
        out.append(
            "Original recipe (SPEC), file order, original initialisation. Each configuration trains \(prefix): "
                + "\(s.warmupPasses) warm-up pass over the first \(s.warmupSamples) samples, then \(s.repeats) timed passes from the same parameters. "
                + "Tables give the median pass as seconds per epoch, the fastest pass, and the spread (max − min) / median. "
                + "Speed-ups divide the baseline named in the same table, measured in this run on the same samples and batch. "
                + String(
                    format:
                        "GFLOP/s count %.0f FLOPs per training sample (`FLOPCount`: multiply-add = 2, sigmoid = 4; skipped zero terms still count).",
                    FLOPCount.trainingSample))
        out.append("")

        // T1
        out.append("## T1: seconds per epoch, one worker, batch 1 (paper's Table 1)")
        out.append("")
        out.append("| engine | s/epoch (median) | fastest | spread | speed-up vs reference | GFLOP/s | % of one core's peak | paper |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for r in results.rows(.sequential) {
            out.append(
                "| \(r.engine) | \(sec(r.secondsPerEpoch)) | \(sec(r.secondsMin * Double(r.epochSamples) / Double(r.samples))) | \(pct(r.spread * 100)) | \(times(r.speedup ?? 1)) | \(f1(r.gflops)) | \(r.percentOfCorePeak.map(pct) ?? "–") | \(r.engine == "sequential" ? "\(sec(p.sequentialSecondsPerEpoch)) (sequential C on a VM)" : "–") |"
            )
        }
        out.append("")

        // T2, T3
        for (table, title, unit, paperRows, paperName) in [
            (BenchmarkTable.mpi, "T2: MPI ranks (paper's Table 2)", "ranks", p.mpi, "MPI"),
            (.threads, "T3: threads (paper's Table 3, OpenMP)", "threads", p.openMP, "OpenMP")
        ] {
            out.append("## \(title)")
            out.append("")
            let rows = results.rows(table).filter { $0.engine != "sequential" }
            if rows.isEmpty {
                out.append("Skipped: \(results.skipped[table.rawValue] ?? "not measured").")
                out.append("")
                continue
            }
            out.append(
                "Layer strategy at batch 1 (the paper's: each layer split across workers, per sample), data strategy at batch \(s.dataBatch) (the batch split across workers). Baseline: sequential at the same batch."
            )
            out.append("")
            out.append(
                "| engine | strategy | batch | \(unit) | s/epoch (median) | fastest | spread | speed-up | efficiency | GFLOP/s | % of used cores' peak | paper speed-up | paper efficiency |"
            )
            out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            var shownBaselines: [String] = []
            for r in rows {
                if let id = r.baseline, !shownBaselines.contains(id), let b = results.measurement(id: id) {
                    shownBaselines.append(id)
                    out.append(
                        "| sequential (baseline) | – | \(b.batch) | 1 | \(sec(b.secondsPerEpoch)) | \(sec(b.secondsMin * Double(b.epochSamples) / Double(b.samples))) | \(pct(b.spread * 100)) | 1.00x | 100% | \(f1(b.gflops)) | \(b.percentOfUsedCoresPeak.map(pct) ?? "–") | | |"
                    )
                }
                let paperRow = r.strategy == "layer" ? paperRows.first { $0.workers == r.workers } : nil
                out.append(
                    "| \(r.engine) | \(r.strategy) | \(r.batch) | \(r.workers) | \(sec(r.secondsPerEpoch)) | \(sec(r.secondsMin * Double(r.epochSamples) / Double(r.samples))) | \(pct(r.spread * 100)) | \(times(r.speedup ?? 0)) | \(pct(100 * (r.efficiency ?? 0))) | \(f1(r.gflops)) | \(r.percentOfUsedCoresPeak.map(pct) ?? "–") | \(paperRow.map { $0.speedup.map(times) ?? ($0.remark ?? "–") } ?? "") | \(paperRow.map { $0.efficiency.map { pct(100 * $0) } ?? "–" } ?? "") |"
                )
            }
            let others = paperRows.filter { r in !rows.contains { $0.workers == r.workers } }
            if !others.isEmpty {
                out.append("")
                out.append(
                    "Paper's \(paperName) rows with no counterpart here: "
                        + others.map { r in
                            "\(r.workers) \(unit): "
                                + (r.speedup.map { "\(times($0)), efficiency \(r.efficiency.map { pct(100 * $0) } ?? "–")" }
                                    ?? (r.remark ?? "–"))
                        }.joined(separator: "; ") + ". The paper's efficiency column is printed as a fraction; shown here as a percentage.")
            }
            if let notes = Optional(rows.filter { $0.note.contains("differ") }), !notes.isEmpty {
                out.append("")
                out.append("Note: \(notes.map(\.id).joined(separator: ", ")) ended at parameters different from the sequential baseline's.")
            }
            out.append("")
        }

        // T4
        out.append("## T4: time per layer within a training epoch (paper's Table 4)")
        out.append("")
        let layerRows = results.rows(.layers)
        var engines: [String] = []
        for r in layerRows where !engines.contains(r.engine) { engines.append(r.engine) }
        if layerRows.isEmpty {
            out.append("Not measured.")
        } else {
            out.append(
                "Seconds per epoch (median, ± spread) of each layer's forward and backward kernels and the update, timed by a clock read between the layers of a real training run (batch 1); each profiled run was checked to end at the engine's own parameters. The paper timed networks reduced to one layer (forward and backward together, no update)."
            )
            out.append("")
            var head = "| layer |", rule = "|---|"
            for e in engines { head += " \(e) forward | \(e) backward | \(e) share |"; rule += "---:|---:|---:|" }
            head += " paper (s/epoch) |"; rule += "---:|"
            out.append(head)
            out.append(rule)
            func cell(_ e: String, _ phase: LayerPhase?) -> String {
                guard let phase, let r = layerRows.first(where: { $0.engine == e && $0.phase == phase }) else { return "–" }
                return "\(sec(r.secondsPerEpoch)) ±\(pct(r.spread * 100))"
            }
            func share(_ e: String, _ phases: [LayerPhase]) -> String {
                guard let total = layerRows.first(where: { $0.engine == e && $0.phase == .network })?.secondsPerEpoch, total > 0 else {
                    return "–"
                }
                let part = layerRows.filter { $0.engine == e && phases.contains($0.phase) }.map(\.secondsPerEpoch).reduce(0, +)
                return pct(100 * part / total)
            }
            for (layer, forward, backward) in [
                ("c1", LayerPhase.c1Forward, LayerPhase.c1Backward), ("s1", .s1Forward, .s1Backward), ("f", .fForward, .fBackward)
            ] {
                var line = "| \(layer) |"
                for e in engines { line += " \(cell(e, forward)) | \(cell(e, backward)) | \(share(e, [forward, backward])) |" }
                line += " \(p.value("T4:\(layer)").map(sec) ?? "–") |"
                out.append(line)
            }
            var update = "| update |"
            for e in engines { update += " | \(cell(e, .update)) | \(share(e, [.update])) |" }
            out.append(update + " – |")
            var total = "| **whole step (profiled)** |"
            for e in engines { total += " | \(cell(e, .network)) | 100% |" }
            out.append(total + " \(sec(["c1", "s1", "f"].compactMap { p.value("T4:\($0)") }.reduce(0, +))) |")
            var plain = "| whole step (unprofiled, T1) |"
            for e in engines {
                let r =
                    results.rows(.sequential).first { $0.engine == e }
                    ?? results.rows(.gpu).first { $0.engine == e && $0.phase == .network }
                plain += " | \(r.map { sec($0.secondsPerEpoch) } ?? "–") | |"
            }
            out.append(plain + " \(sec(p.sequentialSecondsPerEpoch)) (T1) |")
            out.append("")
            out.append(
                "The profiled step reads the clock 8 times per sample; the gap between its total and the unprofiled T1 time (measured separately, so noise counts twice) bounds what timing the layers costs. The paper's rows come from one-layer networks and include no update."
            )
            out.append("")
            let speedups = layerRows.filter { $0.speedup != nil && $0.phase != .network }
            if !speedups.isEmpty {
                out.append(
                    "Per-phase speed-up over the reference engine: "
                        + speedups.map { "\($0.engine) \($0.phase.rawValue) \(times($0.speedup!))" }.joined(separator: ", ") + ".")
                out.append("")
            }
        }

        // T5-8
        out.append("## T5–T8: GPU engines, per layer and whole network (paper's Tables 5–8)")
        out.append("")
        let gpu = results.rows(.gpu) + layerRows.filter { r in !["reference", "sequential"].contains(r.engine) }
        if gpu.isEmpty {
            out.append("Skipped: \(results.skipped[BenchmarkTable.gpu.rawValue] ?? "no GPU rows").")
        } else {
            out.append(
                "| engine | strategy | part | GPU threads | ms per epoch (median) | spread | speed-up vs sequential | GFLOP/s | paper ms | paper speed-up |"
            )
            out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
            for r in gpu {
                let key = r.phase == .network ? "network" : (r.phase.layer ?? r.phase.rawValue)
                out.append(
                    "| \(r.engine) | \(r.strategy) | \(r.phase.rawValue) | \(r.workers) | \(f1(r.secondsPerEpoch * 1000)) | \(pct(r.spread * 100)) | \(r.speedup.map(times) ?? "–") | \(f1(r.gflops)) | \(p.value("T5-8:\(key)").map(f1) ?? "–") | \(p.value("T5-8:\(key):speedup").map(times) ?? "–") |"
                )
            }
        }
        out.append("")
        out.append(
            "Paper (CUDA on a T4, Tables 5–8): "
                + p.cuda.map { "\($0.part) \(f1($0.milliseconds)) ms with \($0.threads) threads (\(times($0.speedup)))" }.joined(
                    separator: "; ") + ".")
        out.append("")

        // Achieved compute.
        out.append("## Achieved compute")
        out.append("")
        out.append(
            String(
                format: "Peak measured by the FMA loop: %.1f GFLOP/s on one core, %.1f on all %d cores. Whole training step, median pass:",
                peak.perCoreGFLOPS, peak.allCoresGFLOPS, peak.cores))
        out.append("")
        out.append("| engine | configuration | GFLOP/s | % of one core's peak | % of the used cores' peak |")
        out.append("|---|---|---:|---:|---:|")
        var seen: [String] = []
        for r in results.measurements where r.phase == .network && r.table != .layers {
            let key = "\(r.engine)/\(r.strategy)/\(r.workers)/\(r.batch)"
            if seen.contains(key) { continue }
            seen.append(key)
            let unit = r.table == .mpi ? "rank" : r.table == .gpu ? "GPU thread" : "thread"
            out.append(
                "| \(r.engine) | \(r.strategy == "-" ? "" : r.strategy + ", ")\(BenchmarkCharts.count(r.workers, unit)), batch \(r.batch) | \(f1(r.gflops)) | \(r.percentOfCorePeak.map(pct) ?? "–") | \(r.percentOfUsedCoresPeak.map(pct) ?? "–") |"
            )
        }
        out.append("")
        out.append(
            "FLOPs per training sample by phase: "
                + LayerPhase.parts.map { "\($0.rawValue) \(Int(FLOPCount.perSample($0)))" }.joined(separator: ", ")
                + String(format: "; total %.0f.", FLOPCount.trainingSample))
        out.append("")

        if !results.skipped.isEmpty {
            out.append("## Skipped")
            out.append("")
            for (key, why) in results.skipped.sorted(by: { $0.key < $1.key }) { out.append("- \(key): \(why)") }
            out.append("")
        }
        out.append("## Charts")
        out.append("")
        for (name, _) in BenchmarkCharts.all(results) {
            let what =
                [
                    "speedup.svg":
                        "speed-up over sequential vs workers: threads and MPI, both strategies, the paper's OpenMP and MPI, ideal line",
                    "speedup-gpu.svg": "GPU speed-up vs GPU threads, with the paper's CUDA figures and the ideal line",
                    "layers.svg": "time per layer as stacked shares of each engine's epoch, beside the paper's Table 4",
                    "epoch.svg": "seconds per epoch of every engine beside the paper's, log axis"
                ][name] ?? name
            out.append("- [`\(name)`](\(name)): \(what)")
        }
        out.append("")
        return out.joined(separator: "\n")
    }

    static func sec(_ v: Double) -> String {
        v >= 100
            ? String(format: "%.1f s", v)
            : v >= 1
                ? String(format: "%.2f s", v)
                : v >= 0.01
                    ? String(format: "%.3f s", v)
                    : String(format: "%.2f ms", v * 1000)
    }
    static func pct(_ v: Double) -> String { v >= 10 ? String(format: "%.0f%%", v) : String(format: "%.1f%%", v) }
    static func times(_ v: Double) -> String { v >= 100 ? String(format: "%.0fx", v) : String(format: "%.2fx", v) }
    static func f1(_ v: Double) -> String { v >= 100 ? String(format: "%.0f", v) : String(format: "%.1f", v) }
}
