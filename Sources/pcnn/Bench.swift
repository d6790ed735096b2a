import ArgumentParser
import Foundation
import ParallelCNN

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reproduce the paper's speed-up tables on this machine.",
        subcommands: [BenchThreads.self])
}

struct BenchThreads: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "threads",
        abstract: "Table 3 analogue: threads engine, layer and data strategies, against sequential in the same run.",
        discussion: """
        Times the original recipe on the first --samples training samples (best of 2 passes), \
        layer strategy at batch 1 and data strategy at --batch, each against the sequential engine \
        at the same batch, measured in the same run. Speed-up = sequential / threads; efficiency = \
        speed-up / threads.
        """)

    @OptionGroup var source: DataOptions

    @Option(help: "Training samples timed per configuration.")
    var samples: Int = 20_000

    @Option(parsing: .upToNextOption, help: "Thread counts to measure.")
    var threads: [Int] = [1, 2, 4]

    @Option(help: "Batch of the data strategy (and of its sequential baseline).")
    var batch: Int = 64

    @Flag(help: "Print the rows as JSON on standard output.")
    var json = false

    func validate() throws {
        guard samples >= 1 else { throw ValidationError("--samples must be at least 1") }
        guard threads.allSatisfy({ (1...256).contains($0) }) else { throw ValidationError("--threads values must be between 1 and 256") }
        guard (1...60_000).contains(batch) else { throw ValidationError("--batch must be between 1 and 60000") }
    }

    func run() throws {
        let data: DatasetPair
        do { data = try source.load(download: true, log: note) } catch { throw fail("\(error)") }
        let count = min(samples, data.train.count)
        note("Timing \(count) samples per configuration on \(EngineConfiguration.availableCores) cores...")
        let rows = Benchmark.threads(data: data.train, samples: count, threadCounts: threads, dataBatch: batch, progress: note)
        let overheads = threads.filter { $0 > 1 }.map { ($0, Benchmark.regionOverhead(threads: $0)) }
        let sequentialPerSample = (rows.first { $0.engine == "sequential" && $0.batch == 1 }?.seconds ?? 0) / Double(count)
        if json {
            let objects: [[String: Any]] = rows.map {
                ["engine": $0.engine, "strategy": $0.strategy, "threads": $0.workers, "batch": $0.batch,
                 "seconds": $0.seconds, "speedup": $0.speedup, "efficiency": $0.efficiency]
            }
            let report: [String: Any] = [
                "samples": count, "rows": objects, "sequential_seconds_per_sample": sequentialPerSample,
                "region_overhead_seconds": Dictionary(uniqueKeysWithValues: overheads.map { (String($0.0), $0.1) }),
                "layer_regions_per_sample": ThreadedEngine.layerRegionsPerSample,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print("Threads engine vs sequential, original recipe, \(count) samples, \(EngineConfiguration.availableCores) cores (paper's Table 3: 2.72x at 2 threads, 2.62x at 4)")
        printTable(rows)
        print(String(format: "sequential: %.2f µs per sample; the layer strategy runs %d parallel regions per sample",
                     sequentialPerSample * 1e6, ThreadedEngine.layerRegionsPerSample))
        for (t, seconds) in overheads {
            print(String(format: "empty parallel region (fork + join), T=%d: %.2f µs", t, seconds * 1e6))
        }
    }
}

/// Prints benchmark rows as the paper's speed-up tables.
func printTable(_ rows: [BenchmarkRow], workerTitle: String = "threads") {
    func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
    print("engine      strategy  batch  \(workerTitle)  seconds  speed-up  efficiency")
    for r in rows {
        let numbers = String(format: "%5d  %*d  %7.3f  %7.2fx  %9.0f%%", r.batch, workerTitle.count, r.workers,
                             r.seconds, r.speedup, 100 * r.efficiency)
        print(pad(r.engine, 11) + " " + pad(r.strategy, 9) + " " + numbers)
    }
}
