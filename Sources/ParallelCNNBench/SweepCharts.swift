import Foundation

/// The sweep's charts: speed-up against FLOPs per sample (measured), the winning strategy per
/// network and worker count (measured), and the model's efficiency past this machine (predicted).
public enum SweepCharts {
    typealias C = BenchmarkCharts

    static let strategyColors: [String: String] = [
        "sequential": C.gray, "threads layer": C.blue, "threads data": C.orange, "mpi layer": C.green, "mpi data": C.red,
        "mpi hybrid": C.purple
    ]

    /// Speed-up over sequential at the same batch against FLOPs per training sample, at the
    /// largest worker count within the cores, one line per strategy.
    public static func speedup(_ r: SweepResults) -> String {
        let workers = r.points.filter { !$0.oversubscribed }.map(\.configuration.workers).max() ?? 1
        let chosen = r.points.filter { $0.configuration.workers == workers && $0.configuration.engine != "sequential" }
        let labels = ["threads layer", "threads data", "mpi layer", "mpi data", "mpi hybrid"]
        let series = labels.compactMap { label -> C.Series? in
            let points = chosen.filter { $0.configuration.label == label }.sorted { $0.flopsPerSample < $1.flopsPerSample }
            guard !points.isEmpty else { return nil }
            return C.Series(
                label: label, color: strategyColors[label] ?? C.brown,
                points: points.map {
                    C.Point(
                        x: $0.flopsPerSample, y: $0.speedup,
                        source: "data-network=\"\(C.escape($0.network))\" data-measured=\"\(C.number($0.measuredSeconds))\"",
                        label: label == "threads layer" ? $0.network : nil)
                })
        }
        return C.lineChart(
            title: "Speed-up against network size, \(workers) workers (measured)",
            subtitle: "\(r.machine); layer strategies at batch 1, data strategies at batch 64, each against sequential at its batch",
            xLabel: "FLOPs per training sample", yLabel: "speed-up over sequential", series: series, xLog: true, yLog: false, ideal: nil,
            footnote:
                "Each point is measured (best of the timed passes, same samples as its sequential baseline). Above 1 the strategy pays off; the layer strategies cross 1 as the network grows."
        )
    }

    /// A grid: networks (by FLOPs) down, worker counts across, each cell the fastest measured
    /// configuration at that worker count.
    public static func winners(_ r: SweepResults) -> String {
        let networks = r.networks.sorted { $0.flopsPerSample < $1.flopsPerSample }.map(\.name)
        let winners = r.winners
        let workerCounts = Array(Set(winners.map(\.workers))).sorted()
        let cellW = 190.0, cellH = 44.0, left = 150.0, top = 100.0
        let width = left + cellW * Double(max(1, workerCounts.count)) + 40, height = top + cellH * Double(networks.count) + 110
        var svg = C.header(
            width: width, height: height, title: "Fastest strategy per network and worker count (measured)",
            subtitle: "\(r.machine); cell: winner and seconds per epoch")
        for (j, w) in workerCounts.enumerated() {
            let oversubscribed = w > r.cores
            svg += C.text(
                left + cellW * (Double(j) + 0.5), top - 12, "\(w) worker\(w == 1 ? "" : "s")\(oversubscribed ? " (oversubscribed)" : "")",
                anchor: "middle", size: 13)
        }
        for (i, network) in networks.enumerated() {
            let y = top + cellH * Double(i)
            svg += C.text(left - 10, y + cellH / 2 + 5, network, anchor: "end", size: 13)
            for (j, w) in workerCounts.enumerated() {
                guard let cell = winners.first(where: { $0.network == network && $0.workers == w }) else { continue }
                let x = left + cellW * Double(j), label = cell.point.configuration.label
                svg +=
                    "<rect x=\"\(C.number(x + 2))\" y=\"\(C.number(y + 2))\" width=\"\(C.number(cellW - 4))\" height=\"\(C.number(cellH - 4))\" fill=\"\(strategyColors[label] ?? C.brown)\" fill-opacity=\"0.75\" data-network=\"\(C.escape(network))\" data-workers=\"\(w)\" data-winner=\"\(C.escape(label))\" data-measured=\"\(C.number(cell.point.measuredSeconds))\"/>\n"
                svg += C.text(
                    x + cellW / 2, y + cellH / 2 + 5,
                    String(format: "%@ b%d · %.2f s", label, cell.point.configuration.batch, cell.point.measuredSeconds), anchor: "middle",
                    size: 12, color: "#ffffff")
            }
        }
        svg += C.text(
            left, height - 40, "Drawn from the measured points only. Layer strategies train at batch 1, data strategies at batch 64.",
            anchor: "start", size: 12, color: "#444444")
        return svg + "</svg>\n"
    }

    /// The model's efficiency of the data strategy (batch 64, ring allreduce) at 8 to 1024 ranks
    /// on each fabric, one line per network: predictions, drawn apart from the measurements.
    public static func predicted(_ r: SweepResults) -> String {
        let palette = [C.blue, C.orange, C.green, C.red, C.purple, C.brown, C.teal]
        var series: [C.Series] = []
        for (k, network) in r.networks.map(\.name).enumerated() {
            for (f, fabric) in Fabric.all.enumerated() {
                let points = r.predictions.filter {
                    $0.network == network && $0.strategy == "data" && $0.fabric == fabric.name && $0.algorithm == "ring"
                }
                guard !points.isEmpty else { continue }
                series.append(
                    C.Series(
                        label: "\(network), \(fabric.name)", color: palette[k % palette.count], dashed: f == 0,
                        points: points.map {
                            C.Point(
                                x: Double($0.ranks), y: 100 * $0.efficiency, source: "data-predicted=\"\(C.number($0.secondsPerEpoch))\"")
                        }))
            }
        }
        return C.lineChart(
            title: "PREDICTED by the cost model: data strategy efficiency beyond this machine",
            subtitle: "batch 64, ring allreduce, one core per rank at this machine's measured speed; not measured",
            xLabel: "ranks", yLabel: "efficiency (%)", series: series, xLog: true, yLog: false, ideal: nil,
            footnote:
                "Model only: α + β·bytes per link ("
                + Fabric.all.map { String(format: "%@: %.0f µs, %.2f GB/s", $0.name, $0.link.alpha * 1e6, 1e-9 / $0.link.beta) }
                .joined(separator: "; ")
                + "). Efficiency = one rank's time / (ranks × time). See sweep.md for tree collectives, the layer strategy and the batch each network needs for 80%."
        )
    }
}
