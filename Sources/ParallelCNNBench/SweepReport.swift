import Foundation
import ParallelCNN

/// The sweep as Markdown: the model's measured terms, every point measured beside predicted, the
/// winners, the delay check and the predictions past this machine.
public enum SweepReport {
    public static func machineTerms(_ m: MachineCosts) -> String {
        var lines = ["Cost model terms measured on this machine (\(m.cores) cores):"]
        for f in m.forkJoin {
            lines.append(
                String(
                    format: "  fork-join, %d threads: %.2f µs with 5 µs of work per thread (empty region: %.2f µs)", f.threads,
                    f.seconds * 1e6,
                    f.emptySeconds * 1e6))
        }
        func cost(_ name: String, _ c: ProtocolCost) {
            lines.append(
                String(
                    format: "  %@: up to %.0f KB α = %.2f µs, β = %.3f ns/B; above α = %.2f µs, β = %.3f ns/B (%.2f GB/s)", name,
                    c.eagerLimit / 1024, c.eager.alpha * 1e6, c.eager.beta * 1e9, c.rendezvous.alpha * 1e6, c.rendezvous.beta * 1e9,
                    c.rendezvous.beta > 0 ? 1e-9 / c.rendezvous.beta : 0))
        }
        lines.append(
            String(
                format: "  one core reading what another wrote: %.3f ns/B (%.1f GB/s)", m.coreTransferPerByte * 1e9,
                m.coreTransferPerByte > 0 ? 1e-9 / m.coreTransferPerByte : 0))
        cost("allreduce, 2 ranks, shared memory", m.allreduceSharedMemory)
        cost("allgather, 2 ranks, shared memory, 5 µs of work between calls", m.allgatherSharedMemory)
        cost("allreduce, 2 ranks, TCP loopback ", m.allreduceTCP)
        cost("allgather, 2 ranks, TCP loopback, 5 µs of work between calls", m.allgatherTCP)
        return lines.joined(separator: "\n")
    }

    static func f(_ format: String, _ args: any CVarArg...) -> String { String(format: format, arguments: args) }

    public static func markdown(_ r: SweepResults, command: String) -> String {
        var md = "# Strategy sweep\n\n"
        md +=
            "`\(command)` on \(r.machine), \(r.mode) mode. Seconds are per epoch of \(r.epochSamples) samples, each point timed on the same samples (best pass) and scaled; modern recipe, Adam.\n\n"
        if !r.skipped.isEmpty { md += "Not measured: \(r.skipped.joined(separator: "; ")).\n\n" }
        md += "## Model terms\n\n```\n" + machineTerms(r.machineCosts) + "\n```\n\n"
        md +=
            "| network | parameters | MFLOP/sample | passes | one core: passes + other (µs) | in blocks (µs per sample) | gradient sum (µs) | update (µs) | GFLOP/s |\n|---|---|---|---|---|---|---|---|---|\n"
        for n in r.networks {
            let perSample = n.cost.sampleSeconds + n.cost.updateSeconds
            let blocks = n.cost.blockSampleSeconds.map { f("%.1f (%d)", $0 * 1e6, n.cost.sumBlockSize) } ?? "-"
            md += f(
                "| %@ | %d | %.2f | %d | %.1f | %@ | %.2f | %.2f | %.1f |\n", n.name, n.parameters, n.flopsPerSample / 1e6,
                n.cost.passes.count, n.cost.sampleSeconds * 1e6, blocks, n.cost.accumulateSeconds * 1e6, n.cost.updateSeconds * 1e6,
                n.flopsPerSample / perSample / 1e9)
        }
        let (within, of) = r.accuracy
        md += "\n## Measured against predicted\n\n"
        md +=
            "\(within) of \(of) points on at most \(r.cores) workers are within ±25% (\(of == 0 ? 0 : 100 * within / of)%); oversubscribed points (more workers than cores) are labelled extras.\n\n"
        md +=
            "| network | strategy | ranks × threads | batch | measured s | predicted s | error | speed-up | fork-joins/sample, /step | messages/sample, /step |\n|---|---|---|---|---|---|---|---|---|---|\n"
        for p in r.points {
            let c = p.configuration, s = p.synchronisations
            md += f(
                "| %@ | %@%@ | %d × %d | %d | %.3f | %@ | %@ | %.2fx | %d, %d | %d, %d |\n", p.network, c.label,
                p.oversubscribed ? " (oversubscribed)" : "", c.ranks, c.threads, c.batch, p.measuredSeconds,
                p.predictedSeconds.map { String(format: "%.3f", $0) } ?? "—",
                p.relativeError.map { String(format: "%+.0f%%", 100 * $0) } ?? "—",
                p.speedup, s.forkJoinsPerSample, s.forkJoinsPerStep, s.messagesPerSample, s.messagesPerStep)
        }
        let misses = r.points.filter { !$0.oversubscribed && abs($0.relativeError ?? 0) > 0.25 }
        if !misses.isEmpty {
            md +=
                "\nMisses beyond ±25%: "
                + misses.map {
                    f(
                        "%@ %@ %d×%d b%d (%+.0f%%)", $0.network, $0.configuration.label, $0.configuration.ranks, $0.configuration.threads,
                        $0.configuration.batch, 100 * ($0.relativeError ?? 0))
                }.joined(separator: "; ") + ".\n"
        }
        md += "\n## Winners (measured)\n\n| network | workers | fastest | s/epoch |\n|---|---|---|---|\n"
        for w in r.winners {
            md += f(
                "| %@ | %d%@ | %@ (batch %d) | %.3f |\n", w.network, w.workers, w.point.oversubscribed ? " (oversubscribed)" : "",
                w.point.configuration.label, w.point.configuration.batch, w.point.measuredSeconds)
        }
        if !r.delays.isEmpty {
            md +=
                "\n## Latency check: every message delayed (PCNN_MPI_DELAY_US)\n\n| network | ranks | delay µs | messages/sample | measured s | predicted s | error |\n|---|---|---|---|---|---|---|\n"
            for d in r.delays {
                md += f(
                    "| %@ | %d | %.0f | %d | %.2f | %.2f | %+.0f%% |\n", d.network, d.ranks, d.delayMicroseconds, d.messagesPerSample,
                    d.measuredSeconds, d.predictedSeconds, 100 * d.relativeError)
            }
        }
        md +=
            "\n## Predicted beyond this machine (model only)\n\nOne core per rank at this machine's measured speed; batch \(r.points.first { $0.configuration.batch > 1 }?.configuration.batch ?? 64) for the data strategy, 1 for layer.\n\n"
        md +=
            "| network | strategy | fabric | collective | ranks | s/epoch | efficiency | batch for ≥80% |\n|---|---|---|---|---|---|---|---|\n"
        for p in r.predictions {
            md += f(
                "| %@ | %@ | %@ | %@ | %d | %.4f | %.0f%% | %@ |\n", p.network, p.strategy, p.fabric, p.algorithm, p.ranks,
                p.secondsPerEpoch, 100 * p.efficiency, p.batchFor80Percent.map { "\($0)" } ?? "none ≤ 65536")
        }
        return md
    }
}
