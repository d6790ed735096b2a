import ParallelCNN
import Foundation

/// SVG charts of a bench run. Every plotted value carries where it came from: `data-id` and
/// `data-field` name a measurement of `results.json` and its field, `data-paper` a key of
/// `PaperFigures.value(_:)`, and `data-value` the number drawn, so a test can check the picture
/// against the results.
public enum BenchmarkCharts {
    /// File name and SVG text of each chart this run has data for.
    public static func all(_ results: BenchmarkResults) -> [(name: String, svg: String)] {
        var charts = [("speedup.svg", speedup(results)), ("layers.svg", layers(results)), ("epoch.svg", epoch(results))]
        if let gpu = gpuSpeedup(results) { charts.insert(("speedup-gpu.svg", gpu), at: 1) }
        return charts
    }

    // MARK: Palette and series

    static let blue = "#1f77b4", orange = "#ff7f0e", green = "#2ca02c", red = "#d62728", purple = "#9467bd"
    static let brown = "#8c564b", gray = "#7f7f7f", teal = "#17becf"

    struct Point {
        var x: Double
        var y: Double
        /// Attributes tying the point to its source.
        var source: String
        /// Text beside the marker, if any.
        var label: String? = nil
    }

    struct Series {
        var label: String
        var color: String
        var dashed = false
        var marker = true
        /// Whether a line joins the points (not for points of different kinds).
        var connected = true
        var points: [Point]
    }

    static func measured(_ r: BenchmarkMeasurement, _ field: String, _ value: Double) -> String {
        "data-id=\"\(escape(r.id))\" data-field=\"\(field)\" data-value=\"\(number(value))\""
    }

    static func paper(_ key: String, _ value: Double) -> String {
        "data-paper=\"\(escape(key))\" data-value=\"\(number(value))\""
    }

    // MARK: Speed-up charts

    /// Speed-up over sequential against workers for threads and MPI, both strategies, with the
    /// paper's OpenMP and MPI figures and the ideal line.
    public static func speedup(_ results: BenchmarkResults) -> String {
        var series: [Series] = []
        let styles: [(BenchmarkTable, String, String, String, Bool)] = [
            (.threads, "layer", "threads, layer (batch 1)", blue, false),
            (.threads, "data", "threads, data (batch \(results.settings.dataBatch))", green, false),
            (.mpi, "layer", "mpi, layer (batch 1)", purple, false),
            (.mpi, "data", "mpi, data (batch \(results.settings.dataBatch))", red, false)
        ]
        for (table, strategy, label, color, dashed) in styles {
            let rows = results.rows(table).filter { $0.strategy == strategy && $0.speedup != nil }.sorted { $0.workers < $1.workers }
            if rows.isEmpty { continue }
            series.append(
                Series(
                    label: label, color: color, dashed: dashed,
                    points: rows.map {
                        Point(x: Double($0.workers), y: $0.speedup!, source: measured($0, "speedup", $0.speedup!))
                    }))
        }
        let p = results.paper
        series.append(
            Series(
                label: "paper, OpenMP (Table 3)", color: orange, dashed: true,
                points: p.openMP.compactMap { r in
                    r.speedup.map { Point(x: Double(r.workers), y: $0, source: paper("T3:\(r.workers)", $0)) }
                }))
        series.append(
            Series(
                label: "paper, MPI (Table 2)", color: brown, dashed: true,
                points: p.mpi.compactMap { r in
                    r.speedup.map { Point(x: Double(r.workers), y: $0, source: paper("T2:\(r.workers)", $0)) }
                }))
        // The ideal line runs to the end of the axis (the next power of two).
        let maxWorkers = pow(2, ceil(log2(series.flatMap { $0.points.map(\.x) }.max() ?? 4)))
        return lineChart(
            title: "Speed-up over sequential vs workers",
            subtitle:
                "\(results.machine.cores) cores, \(modeText(results)); speed-up = sequential time / parallel time, same samples and batch",
            xLabel: "workers (threads or MPI ranks), log scale", yLabel: "speed-up (×)",
            series: series, xLog: true, yLog: false, ideal: (1, maxWorkers),
            footnote: "Ideal: speed-up = workers. Paper: its Tables 2–3 (C on a VM; 8 threads crashed)."
                + (results.skipped[BenchmarkTable.mpi.rawValue].map { " MPI not measured: \($0)" } ?? ""))
    }

    /// GPU engines' speed-up over sequential against GPU threads, with the paper's CUDA figures;
    /// nil when no GPU rows were measured.
    public static func gpuSpeedup(_ results: BenchmarkResults) -> String? {
        let rows = results.rows(.gpu).filter { $0.speedup != nil }
        guard !rows.isEmpty else { return nil }
        let colors = [blue, green, purple, red, teal]
        var series: [Series] = []
        for (k, engine) in Array(Set(rows.map(\.engine))).sorted().enumerated() {
            series.append(
                Series(
                    label: engine, color: colors[k % colors.count],
                    points: rows.filter { $0.engine == engine }
                        .sorted { $0.workers < $1.workers }.map {
                            Point(x: Double($0.workers), y: $0.speedup!, source: measured($0, "speedup", $0.speedup!))
                        }))
        }
        series.append(
            Series(
                label: "paper, CUDA on a T4", color: orange, dashed: true, marker: true, connected: false,
                points: results.paper.cuda.map {
                    Point(
                        x: Double($0.threads), y: $0.speedup, source: paper("T5-8:\($0.part):speedup", $0.speedup),
                        label: $0.part)
                }))
        let maxX = pow(10, ceil(log10(series.flatMap { $0.points.map(\.x) }.max() ?? 10)))
        return lineChart(
            title: "GPU speed-up over sequential vs GPU threads", subtitle: modeText(results),
            xLabel: "GPU threads per launch, log scale", yLabel: "speed-up (×), log scale",
            series: series, xLog: true, yLog: true, ideal: (1, maxX), idealLabel: "ideal (speed-up = threads)",
            footnote:
                "Ideal: speed-up = threads. Labels: the layer (c1, s1, f) or the whole network. Paper: its Tables 5–8 (against its own 102 s/epoch sequential C)."
        )
    }

    // MARK: Per-layer stacked bars

    /// Each engine's epoch split into its layers' forward and backward time and the update, as
    /// shares of its total (the totals differ by 200x), the total written above each bar; the
    /// paper's Table 4 beside them.
    public static func layers(_ results: BenchmarkResults) -> String {
        let phaseColors: [LayerPhase: String] = [
            .c1Forward: "#1f77b4", .c1Backward: "#9ecae1", .s1Forward: "#e6550d", .s1Backward: "#fdae6b",
            .fForward: "#31a354", .fBackward: "#a1d99b", .update: "#636363"
        ]
        let layerColors = ["c1": "#3c8dc5", "s1": "#f28e3c", "f": "#5db85d"]
        struct Segment { var label: String; var color: String; var value: Double; var source: String }
        var bars: [(label: String, sublabel: String, segments: [Segment])] = []
        let rows = results.rows(.layers)
        var engines: [String] = []
        for r in rows where !engines.contains(r.engine) { engines.append(r.engine) }
        for engine in engines {
            let segments = LayerPhase.parts.compactMap { phase -> Segment? in
                guard let r = rows.first(where: { $0.engine == engine && $0.phase == phase }) else { return nil }
                return Segment(
                    label: phase.rawValue, color: phaseColors[phase]!, value: r.secondsPerEpoch,
                    source: measured(r, "secondsPerEpoch", r.secondsPerEpoch))
            }
            bars.append((engine, "ours", segments))
        }
        let paperLayers = ["c1", "s1", "f"].compactMap { layer -> Segment? in
            results.paper.value("T4:\(layer)").map {
                Segment(label: layer, color: layerColors[layer]!, value: $0, source: paper("T4:\(layer)", $0))
            }
        }
        bars.append(("paper", "Table 4", paperLayers))

        let width = 960.0, height = 600.0
        let left = 90.0, right = 250.0, top = 84.0, bottom = 110.0
        let plotW = width - left - right, plotH = height - top - bottom
        var svg = header(
            width: width, height: height, title: "Time per layer within a training epoch",
            subtitle: "share of each engine's s/epoch (total above each bar); \(modeText(results))")
        // Y axis: 0-100 %.
        for k in 0...5 {
            let v = Double(k) * 20, y = top + plotH - plotH * v / 100
            svg += line(left, y, left + plotW, y, stroke: "#dddddd")
            svg += text(left - 8, y + 5, "\(Int(v))", anchor: "end")
        }
        svg += axisLabelY("share of the epoch's time (%)", x: 28, y: top + plotH / 2)
        svg += line(left, top + plotH, left + plotW, top + plotH, stroke: "#333333")
        svg += line(left, top, left, top + plotH, stroke: "#333333")
        let slot = plotW / Double(max(1, bars.count)), barW = min(110, slot * 0.55)
        for (k, bar) in bars.enumerated() {
            let x = left + slot * (Double(k) + 0.5) - barW / 2
            let total = bar.segments.map(\.value).reduce(0, +)
            var y = top + plotH
            for segment in bar.segments {
                let h = total > 0 ? plotH * segment.value / total : 0
                y -= h
                svg +=
                    "<rect x=\"\(number(x))\" y=\"\(number(y))\" width=\"\(number(barW))\" height=\"\(number(h))\" fill=\"\(segment.color)\" stroke=\"#ffffff\" stroke-width=\"0.5\" data-series=\"\(escape(bar.label))\" data-segment=\"\(escape(segment.label))\" data-share=\"\(number(total > 0 ? segment.value / total : 0))\" \(segment.source)><title>\(escape(bar.label)) \(escape(segment.label)): \(seconds(segment.value)) per epoch</title></rect>\n"
                if h >= 18 {
                    svg += text(
                        x + barW / 2, y + h / 2 + 5, "\(Int((100 * segment.value / total).rounded()))%", anchor: "middle",
                        size: 12, color: segment.color == "#636363" || segment.color == "#1f77b4" ? "#ffffff" : "#111111")
                }
            }
            svg += text(x + barW / 2, top - 8, seconds(total) + "/epoch", anchor: "middle", size: 13, weight: "bold")
            svg += text(x + barW / 2, top + plotH + 22, bar.label, anchor: "middle", size: 14)
            svg += text(x + barW / 2, top + plotH + 40, bar.sublabel, anchor: "middle", size: 12, color: "#555555")
        }
        // Legend.
        var ly = top + 4
        let lx = left + plotW + 24
        svg += text(lx, ly + 6, "ours: phase", anchor: "start", size: 13, weight: "bold")
        ly += 22
        for phase in LayerPhase.parts {
            svg += "<rect x=\"\(number(lx))\" y=\"\(number(ly - 11))\" width=\"14\" height=\"14\" fill=\"\(phaseColors[phase]!)\"/>\n"
            svg += text(lx + 22, ly + 1, phase.rawValue, anchor: "start", size: 13)
            ly += 22
        }
        ly += 10
        svg += text(lx, ly + 6, "paper: whole layer", anchor: "start", size: 13, weight: "bold")
        ly += 22
        for layer in ["c1", "s1", "f"] {
            svg += "<rect x=\"\(number(lx))\" y=\"\(number(ly - 11))\" width=\"14\" height=\"14\" fill=\"\(layerColors[layer]!)\"/>\n"
            svg += text(lx + 22, ly + 1, layer, anchor: "start", size: 13)
            ly += 22
        }
        svg += text(
            left, height - 34, "Ours: a clock read between the layers of a real training run (batch 1, original recipe).", anchor: "start",
            size: 12, color: "#444444")
        svg += text(
            left, height - 16,
            "Paper: each layer timed in a network reduced to that layer, forward and backward together, no update (Table 4).",
            anchor: "start", size: 12, color: "#444444")
        return svg + "</svg>\n"
    }

    // MARK: Seconds per epoch

    /// Seconds per epoch of every engine (its best configuration per strategy) beside the
    /// paper's, on a log axis.
    public static func epoch(_ results: BenchmarkResults) -> String {
        struct Bar { var label: String; var value: Double; var ours: Bool; var source: String }
        var bars: [Bar] = []
        for r in results.rows(.sequential) {
            bars.append(
                Bar(label: r.engine, value: r.secondsPerEpoch, ours: true, source: measured(r, "secondsPerEpoch", r.secondsPerEpoch)))
        }
        for table in [BenchmarkTable.threads, .mpi, .gpu] {
            let rows = results.rows(table).filter { $0.phase == .network && $0.engine != "sequential" }
            var keys: [String] = []
            for r in rows where !keys.contains(r.engine + "/" + r.strategy) { keys.append(r.engine + "/" + r.strategy) }
            for key in keys {
                guard let best = rows.filter({ $0.engine + "/" + $0.strategy == key }).min(by: { $0.secondsPerEpoch < $1.secondsPerEpoch })
                else { continue }
                let strategy = best.strategy == "-" ? "" : " \(best.strategy)"
                let unit = table == .mpi ? "rank" : table == .gpu ? "GPU thread" : "thread"
                bars.append(
                    Bar(
                        label: "\(best.engine)\(strategy), \(count(best.workers, unit)), batch \(best.batch)", value: best.secondsPerEpoch,
                        ours: true, source: measured(best, "secondsPerEpoch", best.secondsPerEpoch)))
            }
        }
        let p = results.paper
        bars.append(
            Bar(
                label: "paper: sequential C (T1)", value: p.sequentialSecondsPerEpoch, ours: false,
                source: paper("T1", p.sequentialSecondsPerEpoch)))
        if let best = p.openMP.filter({ $0.speedup != nil }).max(by: { $0.speedup! < $1.speedup! }) {
            let v = p.secondsPerEpoch(speedup: best.speedup!)
            bars.append(
                Bar(
                    label: "paper: OpenMP, \(best.workers) threads (T3)", value: v, ours: false,
                    source: paper("T3:\(best.workers):epoch", v)))
        }
        if let best = p.mpi.filter({ $0.speedup != nil }).max(by: { $0.speedup! < $1.speedup! }) {
            let v = p.secondsPerEpoch(speedup: best.speedup!)
            bars.append(
                Bar(label: "paper: MPI, \(best.workers) ranks (T2)", value: v, ours: false, source: paper("T2:\(best.workers):epoch", v)))
        }
        if let network = p.value("T5-8:network") {
            bars.append(
                Bar(
                    label: "paper: CUDA on a T4 (T8)", value: network / 1000, ours: false,
                    source: "data-paper=\"T5-8:network\" data-scale=\"0.001\" data-value=\"\(number(network / 1000))\""))
        }

        let width = 960.0, rowH = 30.0, left = 300.0, right = 150.0, top = 84.0, bottom = 124.0
        let height = top + bottom + rowH * Double(bars.count)
        let plotW = width - left - right, plotH = rowH * Double(bars.count)
        let values = bars.map(\.value).filter { $0 > 0 }
        let lo = floor(log10(values.min() ?? 0.1)), hi = ceil(log10(values.max() ?? 100))
        func xOf(_ v: Double) -> Double { left + plotW * (log10(v) - lo) / max(1, hi - lo) }
        var svg = header(
            width: width, height: height, title: "Seconds per training epoch: ours beside the paper's",
            subtitle: "\(modeText(results)); best configuration of each engine and strategy")
        for e in Int(lo)...Int(hi) {
            let x = xOf(pow(10, Double(e)))
            svg += line(x, top, x, top + plotH, stroke: "#dddddd")
            svg += text(x, top + plotH + 20, decade(e), anchor: "middle", size: 13)
        }
        svg += line(left, top, left, top + plotH, stroke: "#333333")
        svg += line(left, top + plotH, left + plotW, top + plotH, stroke: "#333333")
        svg += text(left + plotW / 2, top + plotH + 46, "seconds per epoch (60000 samples), log scale", anchor: "middle", size: 14)
        for (k, bar) in bars.enumerated() {
            let y = top + rowH * Double(k) + 5, h = rowH - 10
            let x1 = max(left, xOf(bar.value))
            svg +=
                "<rect x=\"\(number(left))\" y=\"\(number(y))\" width=\"\(number(x1 - left))\" height=\"\(number(h))\" fill=\"\(bar.ours ? blue : orange)\" data-series=\"\(bar.ours ? "ours" : "paper")\" \(bar.source)><title>\(escape(bar.label)): \(seconds(bar.value))</title></rect>\n"
            svg += text(left - 8, y + h / 2 + 5, bar.label, anchor: "end", size: 13)
            svg += text(x1 + 6, y + h / 2 + 5, seconds(bar.value), anchor: "start", size: 13)
        }
        let ly = height - 44
        svg += "<rect x=\"\(number(left))\" y=\"\(number(ly - 11))\" width=\"14\" height=\"14\" fill=\"\(blue)\"/>\n"
        svg += text(
            left + 20, ly + 1, "ours, this machine (\(results.machine.cpuModel), \(results.machine.cores) cores)", anchor: "start", size: 13
        )
        svg += "<rect x=\"\(number(left))\" y=\"\(number(ly + 9))\" width=\"14\" height=\"14\" fill=\"\(orange)\"/>\n"
        svg += text(left + 20, ly + 21, "paper (VM for CPU; T4 GPU), speed-ups applied to its 102.3 s", anchor: "start", size: 13)
        return svg + "</svg>\n"
    }

    // MARK: Drawing

    static func lineChart(
        title: String, subtitle: String, xLabel: String, yLabel: String, series: [Series],
        xLog: Bool, yLog: Bool, ideal: (Double, Double)?, idealLabel: String = "ideal (speed-up = workers)",
        footnote: String
    ) -> String {
        let width = 960.0, height = 600.0, left = 90.0, right = 270.0, top = 84.0, bottom = 110.0
        let plotW = width - left - right, plotH = height - top - bottom
        let xs = series.flatMap { $0.points.map(\.x) } + (ideal.map { [$0.0, $0.1] } ?? [])
        var ys = series.flatMap { $0.points.map(\.y) }
        if let ideal { ys += [ideal.0, ideal.1] }
        let xLo = xLog ? floor(log2(max(1, xs.min() ?? 1))) : 0
        let xHi = xLog ? ceil(log2(max(2, xs.max() ?? 2))) : (xs.max() ?? 1)
        let useDecadesX = xLog && xHi - xLo > 6
        let xLoD = floor(log10(max(1, xs.min() ?? 1))), xHiD = ceil(log10(max(10, xs.max() ?? 10)))
        let yLoL = floor(log10(max(1e-3, ys.filter { $0 > 0 }.min() ?? 1))), yHiL = ceil(log10(max(10, ys.max() ?? 10)))
        let yMax = yLog ? 0 : niceCeiling(max(1, ys.max() ?? 1) * 1.08)
        func xOf(_ v: Double) -> Double {
            if !xLog { return left + plotW * v / max(1, xHi) }
            if useDecadesX { return left + plotW * (log10(v) - xLoD) / max(1, xHiD - xLoD) }
            return left + plotW * (log2(v) - xLo) / max(1, xHi - xLo)
        }
        func yOf(_ v: Double) -> Double {
            yLog ? top + plotH - plotH * (log10(max(v, 1e-9)) - yLoL) / max(1, yHiL - yLoL) : top + plotH - plotH * v / yMax
        }
        var svg = header(width: width, height: height, title: title, subtitle: subtitle)
        // Grid and ticks.
        if yLog {
            for e in Int(yLoL)...Int(yHiL) {
                let y = yOf(pow(10, Double(e)))
                svg += line(left, y, left + plotW, y, stroke: "#dddddd")
                svg += text(left - 8, y + 5, decade(e), anchor: "end", size: 13)
            }
        } else {
            let step = niceStep(yMax / 5)
            var v = 0.0
            while v <= yMax + 1e-9 {
                let y = yOf(v)
                svg += line(left, y, left + plotW, y, stroke: "#dddddd")
                svg += text(left - 8, y + 5, trim(v), anchor: "end", size: 13)
                v += step
            }
        }
        let xTicks: [Double] =
            useDecadesX
            ? (Int(xLoD)...Int(xHiD)).map { pow(10, Double($0)) }
            : (Int(xLo)...Int(xHi)).map { pow(2, Double($0)) }
        for t in xTicks {
            let x = xOf(t)
            svg += line(x, top, x, top + plotH, stroke: "#eeeeee")
            svg += text(x, top + plotH + 20, useDecadesX ? decade(Int(log10(t).rounded())) : trim(t), anchor: "middle", size: 13)
        }
        svg += line(left, top + plotH, left + plotW, top + plotH, stroke: "#333333")
        svg += line(left, top, left, top + plotH, stroke: "#333333")
        svg += text(left + plotW / 2, top + plotH + 46, xLabel, anchor: "middle", size: 14)
        svg += axisLabelY(yLabel, x: 28, y: top + plotH / 2)
        // Ideal.
        // Legend entries: label, colour, line (nil, solid or dashed), marker (nil, circle or square).
        var legend: [(String, String, String?, String?)] = []
        if let (a, b) = ideal {
            let steps = 40
            let pts = (0...steps).map { k -> String in
                let v = xLog ? a * pow(b / a, Double(k) / Double(steps)) : a + (b - a) * Double(k) / Double(steps)
                return "\(number(xOf(v))),\(number(yOf(v)))"
            }
            svg +=
                "<polyline points=\"\(pts.joined(separator: " "))\" fill=\"none\" stroke=\"\(gray)\" stroke-width=\"1.5\" stroke-dasharray=\"2,4\" data-series=\"ideal\"/>\n"
            legend.append((idealLabel, gray, "dotted", nil))
        }
        for s in series where !s.points.isEmpty {
            let pts = s.points.map { "\(number(xOf($0.x))),\(number(yOf($0.y)))" }.joined(separator: " ")
            if s.connected {
                svg +=
                    "<polyline points=\"\(pts)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2.5\"\(s.dashed ? " stroke-dasharray=\"7,5\"" : "") data-series=\"\(escape(s.label))\"/>\n"
            }
            var placed: [(Double, Double)] = []
            for p in s.points {
                if let label = p.label {
                    // Labels of near points would overprint: move down until clear.
                    var y = yOf(p.y) + 5
                    while placed.contains(where: { abs($0.0 - xOf(p.x)) < 40 && abs($0.1 - y) < 14 }) { y += 14 }
                    placed.append((xOf(p.x), y))
                    svg += text(xOf(p.x) + 9, y, label, anchor: "start", size: 12, color: s.color)
                }
                let shape =
                    s.dashed
                    ? "<rect x=\"\(number(xOf(p.x) - 5))\" y=\"\(number(yOf(p.y) - 5))\" width=\"10\" height=\"10\" fill=\"#ffffff\" stroke=\"\(s.color)\" stroke-width=\"2\""
                    : "<circle cx=\"\(number(xOf(p.x)))\" cy=\"\(number(yOf(p.y)))\" r=\"5\" fill=\"\(s.color)\""
                svg +=
                    "\(shape) data-series=\"\(escape(s.label))\" data-x=\"\(number(p.x))\" \(p.source)><title>\(escape(s.label)): \(trim(p.x)) → \(String(format: "%.3g", p.y))×</title></\(s.dashed ? "rect" : "circle")>\n"
            }
            legend.append((s.label, s.color, s.connected ? (s.dashed ? "dashed" : "solid") : nil, s.dashed ? "square" : "circle"))
        }
        var ly = top + 6
        let lx = left + plotW + 24
        for (label, color, style, marker) in legend {
            if let style {
                let dash = style == "dashed" ? " stroke-dasharray=\"6,4\"" : style == "dotted" ? " stroke-dasharray=\"2,4\"" : ""
                svg +=
                    "<line x1=\"\(number(lx))\" y1=\"\(number(ly))\" x2=\"\(number(lx + 34))\" y2=\"\(number(ly))\" stroke=\"\(color)\" stroke-width=\"2.5\"\(dash)/>\n"
            }
            if let marker {
                svg +=
                    marker == "square"
                    ? "<rect x=\"\(number(lx + 12))\" y=\"\(number(ly - 5))\" width=\"10\" height=\"10\" fill=\"#ffffff\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
                    : "<circle cx=\"\(number(lx + 17))\" cy=\"\(number(ly))\" r=\"5\" fill=\"\(color)\"/>\n"
            }
            svg += text(lx + 42, ly + 5, label, anchor: "start", size: 13)
            ly += 24
        }
        for (k, part) in wrap(footnote, width: 120).enumerated() {
            svg += text(left, height - 34 + Double(k) * 16, part, anchor: "start", size: 12, color: "#444444")
        }
        return svg + "</svg>\n"
    }

    static func header(width: Double, height: Double, title: String, subtitle: String) -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(number(width))" height="\(number(height))" viewBox="0 0 \(number(width)) \(number(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
        <rect x="0" y="0" width="\(number(width))" height="\(number(height))" fill="#ffffff"/>
        <text x="\(number(width / 2))" y="30" text-anchor="middle" font-size="20" font-weight="bold" fill="#111111">\(escape(title))</text>
        <text x="\(number(width / 2))" y="54" text-anchor="middle" font-size="13" fill="#444444">\(escape(subtitle))</text>

        """
    }

    static func text(
        _ x: Double, _ y: Double, _ s: String, anchor: String, size: Double = 14, weight: String = "normal",
        color: String = "#111111"
    ) -> String {
        "<text x=\"\(number(x))\" y=\"\(number(y))\" text-anchor=\"\(anchor)\" font-size=\"\(number(size))\" font-weight=\"\(weight)\" fill=\"\(color)\">\(escape(s))</text>\n"
    }

    static func axisLabelY(_ s: String, x: Double, y: Double) -> String {
        "<text x=\"\(number(x))\" y=\"\(number(y))\" text-anchor=\"middle\" font-size=\"14\" fill=\"#111111\" transform=\"rotate(-90 \(number(x)) \(number(y)))\">\(escape(s))</text>\n"
    }

    static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String) -> String {
        "<line x1=\"\(number(x1))\" y1=\"\(number(y1))\" x2=\"\(number(x2))\" y2=\"\(number(y2))\" stroke=\"\(stroke)\" stroke-width=\"1\"/>\n"
    }

    static func modeText(_ r: BenchmarkResults) -> String {
        r.settings.mode == "full"
            ? "whole epochs" : "quick mode: first \(r.settings.samples) of \(r.settings.epochSamples) samples, scaled to an epoch"
    }

    /// Exact, locale-free number text (round-trips through `Double(_:)`).
    static func number(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : "\(v)"
    }

    /// "1 thread", "4 threads".
    static func count(_ n: Int, _ unit: String) -> String { "\(n) \(unit)\(n == 1 ? "" : "s")" }

    static func trim(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(format: "%g", v) }

    static func decade(_ e: Int) -> String {
        e >= 0 ? String(Int(pow(10, Double(e)))) : String(format: "%g", pow(10, Double(e)))
    }

    static func seconds(_ v: Double) -> String {
        v >= 100
            ? String(format: "%.0f s", v)
            : v >= 10
                ? String(format: "%.1f s", v)
                : v >= 0.1 ? String(format: "%.2f s", v) : String(format: "%.1f ms", v * 1000)
    }

    static func niceStep(_ raw: Double) -> Double {
        let magnitude = pow(10, floor(log10(max(raw, 1e-9))))
        for m in [1.0, 2, 2.5, 5, 10] where raw <= m * magnitude { return m * magnitude }
        return 10 * magnitude
    }

    static func niceCeiling(_ v: Double) -> Double {
        let step = niceStep(v / 5)
        return (v / step).rounded(.up) * step
    }

    static func wrap(_ s: String, width: Int) -> [String] {
        var lines: [String] = [], current = ""
        for word in s.split(separator: " ") {
            if current.count + word.count + 1 > width, !current.isEmpty { lines.append(current); current = "" }
            current += (current.isEmpty ? "" : " ") + word
        }
        if !current.isEmpty { lines.append(current) }
        return lines
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
