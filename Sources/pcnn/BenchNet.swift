import ArgumentParser
import Foundation
import ParallelCNN
import ParallelCNNBench

struct BenchNet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "net",
        abstract:
            "Any network (--net): sequential, threads layer and threads data, with GFLOP/s and the fraction of the cores' measured peak.",
        discussion: """
            Trains the modern recipe (Adam, or --optimizer sgd) on the first --samples training \
            samples: sequential per sample and at --batch, the threads engine's layer strategy per sample and its data \
            strategy at --batch, each against sequential at the same batch in the same run. They are \
            timed in --rounds rounds of one pass each, in turn, and each keeps its fastest pass (a \
            shared machine's speed drifts; rounds make the drift hit every row alike, and more of \
            them let every row, the ones that need all cores quiet at once included, catch a quiet \
            spell). \
            GFLOP/s counts the network's FLOPs per training sample (`pcnn nets`); peak is measured here \
            first, per core, with a fused multiply-add loop.
            """)

    @OptionGroup var source: DataOptions

    @OptionGroup var network: NetworkOption

    @Option(help: "Training samples timed per configuration.")
    var samples: Int = 6_000

    @Option(parsing: .upToNextOption, help: "Thread counts of the threads engine.")
    var threads: [Int] = [EngineRegistry.availableCores]

    @Option(help: "Batch of the batched rows.")
    var batch: Int = 64

    @Option(
        help:
            "Optimizer of the modern recipe: adam, or sgd (momentum SGD). Per sample, Adam's square root and division of every parameter are most of the update."
    )
    var optimizer: Optimizer = .adam

    @Option(help: "Rounds of one pass per configuration; each configuration keeps its fastest pass.")
    var rounds: Int = 5

    @Option(help: "Also time a GPU engine (opencl or cuda): its strategies per sample and at --batch, with kernel launches per epoch.")
    var gpu: DeviceBackend?

    @Flag(help: "Print the rows as JSON on standard output.")
    var json = false

    @Flag(
        help:
            "Also print where a block of the batch strategies spends its time: each forward and backward pass, and the update at --batch, in µs per sample (any network but the paper's, whose kernels run one sample at a time)."
    )
    var passes = false

    func validate() throws {
        guard samples >= 1 else { throw ValidationError("--samples must be at least 1") }
        guard (1...100).contains(rounds) else { throw ValidationError("--rounds must be between 1 and 100") }
        guard threads.allSatisfy({ (1...EngineOptions.maximumThreads).contains($0) }) else {
            throw ValidationError("--threads values must be between 1 and \(EngineOptions.maximumThreads)")
        }
        guard TrainingRequest.batchSizes.contains(batch) else { throw ValidationError(TrainingRequest.batchSizeMessage(batch)) }
    }

    func run() throws {
        let data: DatasetPair
        do { data = try source.load(download: true, log: note) } catch { throw fail("\(error)") }
        let architecture: Architecture
        do {
            architecture = try Architecture(network.description() ?? .paper, input: data.train.shape)
        } catch {
            throw fail("\(error)")
        }
        if passes, architecture.isPaper {
            throw fail(
                "--passes: the paper's network runs its specialised kernels, one sample at a time; `pcnn bench` times its layers (Table 4)")
        }
        note("Measuring the cores' peak...")
        let peak = PeakFLOPS.measure()
        let count = min(samples, data.train.count)
        note(
            "Timing \(architecture.network) (\(String(format: "%.2f", architecture.flopsPerTrainingSample / 1e6)) MFLOP per training sample) on \(count) samples..."
        )
        var rows = try NetworkBenchmark.run(
            architecture, data: data.train, samples: count, batch: batch, threads: threads,
            peak: peak, optimizer: optimizer, repeats: rounds, progress: note)
        if let gpu {
            if case .unavailable(let remedy) = gpu.availability() { throw fail("--gpu \(gpu.rawValue): \(remedy)") }
            do {
                rows += try NetworkBenchmark.deviceRows(
                    architecture, backend: gpu, data: data.train, samples: count, batch: batch, progress: note)
            } catch { throw fail("--gpu \(gpu.rawValue): \(error)") }
        }
        // With --json, standard output holds the JSON alone.
        if passes { printPasses(architecture, data: data.train, samples: count, output: json ? note : { print($0) }) }
        if json {
            let objects: [[String: Any]] = rows.map {
                [
                    "engine": $0.engine, "strategy": $0.strategy, "threads": $0.workers, "batch": $0.batch,
                    "seconds_per_sample": $0.secondsPerSample, "seconds_per_epoch_60000": $0.secondsPerSample * 60_000,
                    "speedup": $0.speedup, "gflops": $0.gflops, "peak_fraction": $0.peakFraction,
                    "launches_per_epoch_60000": $0.launchesPerEpoch ?? NSNull()
                ]
            }
            let report: [String: Any] = [
                "network": architecture.network.text, "samples": count, "rows": objects, "optimizer": optimizer.rawValue,
                "peak_gflops_per_core": peak.perCoreGFLOPS,
                "flops_per_training_sample": architecture.flopsPerTrainingSample
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print(
            "\(architecture.network) on \(architecture.input), \(count) samples, modern recipe (\(optimizerName)), \(EngineRegistry.availableCores) cores, peak \(String(format: "%.1f", peak.perCoreGFLOPS)) GFLOP/s per core (\(peak.method))"
        )
        print("engine      strategy  threads  batch  µs/sample  s/epoch(60k)  speed-up  GFLOP/s  of peak")
        for r in rows {
            if let launches = r.launchesPerEpoch {
                print(
                    r.engine.padding(toLength: 27, withPad: " ", startingAt: 0) + " "
                        + r.strategy.padding(toLength: 6, withPad: " ", startingAt: 0)
                        + String(
                            format: " batch %5d  %9.1f µs/sample  %8.2f s/epoch  %7.1f GFLOP/s  %9.0f launches/epoch", r.batch,
                            r.secondsPerSample * 1e6, r.secondsPerSample * 60_000, r.gflops, launches))
                continue
            }
            print(
                (r.engine.padding(toLength: 11, withPad: " ", startingAt: 0)) + " "
                    + r.strategy.padding(toLength: 9, withPad: " ", startingAt: 0)
                    + String(
                        format: " %7d  %5d  %9.1f  %12.2f  %7.2fx  %7.1f  %6.1f%%", r.workers, r.batch, r.secondsPerSample * 1e6,
                        r.secondsPerSample * 60_000, r.speedup, r.gflops, 100 * r.peakFraction))
        }
    }

    /// The optimizer as the tables name it.
    private var optimizerName: String { optimizer == .adam ? "Adam" : "momentum SGD" }

    /// The `--passes` table: each pass in whole blocks (the batch strategies) and for one sample
    /// at a time (batch 1), then the optimizer's update, shared by a batch or paid by every sample.
    private func printPasses(_ architecture: Architecture, data: Dataset, samples: Int, output print: (String) -> Void) {
        note("Timing each pass over whole blocks of the batch strategies, then one sample at a time...")
        let parameters = Initialization.seeded(1).makeParameters(for: architecture)
        let blocks = PassProfile.blockPasses(architecture, data: data, samples: samples, parameters: parameters, recipe: .modern)
        let single = PassProfile.measure(
            architecture, data: data, samples: min(samples, 1_000), parameters: parameters,
            rule: UpdateRule(recipe: .modern, optimizer: optimizer))
        let update = single.updateSeconds
        // The two lists differ where a block has passes of its own (the gathers of dense inputs):
        // merged in running order, a pass missing from one list counted as 0 there.
        var rows: [(String, Double, Double)] = []
        var next = single.passes[...]
        for pass in blocks {
            while let first = next.first, !blocks.contains(where: { $0.name == first.name }) {
                rows.append((first.name, 0, first.seconds))
                next = next.dropFirst()
            }
            let one = next.first?.name == pass.name ? next.popFirst()!.seconds : 0
            rows.append((pass.name, pass.seconds, one))
        }
        rows += next.map { ($0.name, 0, $0.seconds) }
        rows += [("update (\(optimizerName))", update / Double(batch), update), ("rest of the sample", 0, single.otherSeconds)]
        let totals = rows.reduce((0.0, 0.0)) { ($0.0 + $1.1, $0.1 + $1.2) }
        print("pass                        µs/sample at batch \(batch)  share   µs/sample at batch 1  share")
        for (name, batched, one) in rows + [("total", totals.0, totals.1)] {
            print(
                name.padding(toLength: 28, withPad: " ", startingAt: 0)
                    + String(
                        format: "  %21.2f  %4.1f%%  %20.2f  %4.1f%%", batched * 1e6, 100 * batched / totals.0, one * 1e6,
                        100 * one / totals.1))
        }
        print("")
    }
}
