import ArgumentParser
import Foundation
import ParallelCNN
import ParallelCNNBench

extension DeviceBackend: ExpressibleByArgument {}

struct BenchDevice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "Tables 5-8 analogue: per-layer kernel times from device events and whole-network seconds per epoch, layer and fused.",
        discussion: """
            For each strategy and batch, trains the original recipe on the first --samples training \
            samples twice from the same start: once free-running (wall time, synchronised at the end: \
            the whole network, Table 8) and once with a device event pair around every launch (device \
            time per kernel, summed per layer: conv, pooling and FC, Tables 5-7; the event pass waits \
            after each launch). Figures are scaled to one 60,000-sample epoch.
            """)

    @OptionGroup var source: DataOptions

    @Option(help: "opencl or cuda.")
    var backend: DeviceBackend = .opencl

    @Option(parsing: .upToNextOption, help: "Strategies to measure: fused, layer.")
    var strategy: [EngineStrategy] = [.fused, .layer]

    @Option(help: "Device index (see `pcnn devices`).")
    var device: Int = 0

    @Option(parsing: .upToNextOption, help: "Batch sizes to measure (1 is the SPEC's per-sample SGD).")
    var batch: [Int] = [1, 64]

    @Option(help: "Training samples timed per configuration.")
    var samples: Int = 5_000

    @Flag(help: "Print the rows as JSON on standard output.")
    var json = false

    func validate() throws {
        guard samples >= 1 else { throw ValidationError("--samples must be at least 1") }
        if strategy.contains(.data) { throw ValidationError("--strategy: a device engine runs fused or layer, not data") }
        if let bad = batch.first(where: { !TrainingRequest.batchSizes.contains($0) }) {
            throw ValidationError(TrainingRequest.batchSizeMessage(bad))
        }
    }

    static func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }

    /// Which table a kernel's time belongs to.
    static func layer(of kernel: String) -> String {
        if kernel.hasPrefix("fused") { return "fused (all layers)" }
        if kernel == "batch_update" { return "update" }
        // The paper's layer kernels end in the layer they belong to: conv_forward_c1, subsample_backward_input_s1, dense_backward_f.
        if kernel.hasSuffix("_c1") { return "conv (c1)" }
        if kernel.hasSuffix("_s1") { return "pooling (s1)" }
        return "fc (f)"
    }

    func run() throws {
        if case .unavailable(let remedy) = backend.availability() { throw fail("the \(backend) engine is not available: \(remedy)") }
        let data: DatasetPair
        do { data = try source.load(download: true, log: note) } catch { throw fail("\(error)") }
        let train = data.train.prefix(samples)
        let scale = 60_000 / Double(train.count)
        let start = Initialization.original.makeParameters()
        var rows: [[String: Any]] = []
        do {
            let device = try backend.open(device: device)
            note("\(backend) on \(device.name): \(train.count) samples per configuration")
            for strategy in strategy {
                for batch in batch {
                    let rule = UpdateRule(recipe: .original)
                    let order = (0..<Int32(train.count)).map { $0 }
                    let engine = try DeviceEngine(device: device, strategy: strategy, parameters: start)
                    try engine.prepare(training: train)
                    // Warm-up: first launches compile and page in.
                    try engine.beginEpoch(order: Array(order.prefix(batch)), batchSize: batch, rule: rule, at: 0)
                    try engine.train(until: min(batch, order.count))
                    try engine.synchronize()

                    try engine.load(parameters: start)
                    try engine.beginEpoch(order: order, batchSize: batch, rule: rule, at: 0)
                    let t0 = Trainer.now()
                    try engine.train(until: order.count)
                    try engine.synchronize()
                    let wall = Trainer.now() - t0

                    try engine.load(parameters: start)
                    try engine.beginEpoch(order: order, batchSize: batch, rule: rule, at: 0)
                    let timeline = DeviceTimeline()
                    device.timeline = timeline
                    defer { device.timeline = nil }
                    try engine.train(until: order.count)
                    device.timeline = nil
                    var layers: [String: Double] = [:]
                    for (kernel, s) in timeline.seconds { layers[Self.layer(of: kernel), default: 0] += s * scale }
                    let launches = timeline.launches.values.reduce(0, +)
                    rows.append([
                        "backend": backend.rawValue, "device": device.name, "strategy": strategy.rawValue, "batch": batch,
                        "samples": train.count, "seconds_per_epoch": wall * scale,
                        "kernel_seconds_per_epoch": timeline.seconds.mapValues { $0 * scale },
                        "layer_seconds_per_epoch": layers, "launches_per_epoch": Double(launches) * scale
                    ])
                    if !json {
                        print(
                            String(
                                format: "%@ %@ batch %d: %.3f s/epoch whole network (wall), %.0f launches per 60,000 samples",
                                backend.rawValue, strategy.rawValue, batch, wall * scale, Double(launches) * scale))
                        for (layer, s) in layers.sorted(by: { $0.key < $1.key }) {
                            print("    " + Self.pad(layer, 24) + String(format: "%10.4f s/epoch (device events)", s))
                        }
                        for (kernel, s) in timeline.seconds.sorted(by: { $0.key < $1.key }) {
                            print(
                                "      " + Self.pad(kernel, 22)
                                    + String(
                                        format: "%10.4f s/epoch, %10.2f µs/launch", s * scale,
                                        s / Double(timeline.launches[kernel] ?? 1) * 1e6))
                        }
                    }
                }
            }
        } catch let error as DeviceError {
            throw fail("\(error)")
        }
        if json {
            let report: [String: Any] = ["rows": rows, "paper_t4": ["conv": 0.090, "pooling": 0.0052, "fc": 0.00039, "whole_network": 3.0]]
            print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(
                "paper (T4, CUDA): conv 90 ms, pooling 5.2 ms, FC 0.39 ms of kernel time per epoch (Tables 5-7); 3.0 s per epoch whole network (Table 8)"
            )
        }
    }
}
