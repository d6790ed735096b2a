import ParallelCNN
/// Per-layer kernel times of the device engines from device events: the paper's Tables 5–7,
/// as rows of `pcnn bench` (the registry's generic T5-8 rows give the whole network, Table 8).
public enum DeviceBenchmark {
    /// The training phase a layer-strategy kernel belongs to (the CPU engines' T4 names).
    public static func phase(of kernel: String) -> LayerPhase {
        switch kernel {
        case "conv_forward_c1": .c1Forward
        case "subsample_forward_s1": .s1Forward
        case "dense_forward_f": .fForward
        case "dense_backward_input_f", "dense_backward_f": .fBackward  // error through f, f's gradient
        case "subsample_backward_s1", "subsample_backward_input_s1": .s1Backward  // s1's gradient, error through s1
        case "conv_backward_c1": .c1Backward
        case "batch_update": .update
        default: .network
        }
    }

    /// Device time per phase of the layer strategy at batch 1 on the first `settings.samples`
    /// samples, `settings.repeats` passes from the same parameters (each launch is timed by an
    /// event pair and waited for, so the sum excludes launch gaps: kernel time only).
    public static func layerPhases(
        backend: DeviceBackend, data: Dataset, settings: BenchmarkSettings,
        start: Parameters = Initialization.original.makeParameters()
    ) throws -> [BenchmarkMeasurement] {
        let samples = min(settings.samples, data.count)
        let engine = try DeviceEngine(backend: backend, strategy: .layer, parameters: start)
        try engine.prepare(training: data.prefix(samples))
        let order = (0..<Int32(samples)).map { $0 }
        let rule = UpdateRule(recipe: .original)
        try engine.beginEpoch(order: order, batchSize: 1, rule: rule, at: 0)
        try engine.train(until: min(samples, max(1, settings.warmupSamples)))
        try engine.synchronize()
        var perPhase: [LayerPhase: [Double]] = [:]
        for _ in 0..<max(1, settings.repeats) {
            try engine.load(parameters: start)
            try engine.beginEpoch(order: order, batchSize: 1, rule: rule, at: 0)
            let timeline = DeviceTimeline()
            engine.device.timeline = timeline
            defer { engine.device.timeline = nil }
            try engine.train(until: samples)
            engine.device.timeline = nil
            var sums: [LayerPhase: Double] = [:]
            for (kernel, seconds) in timeline.seconds { sums[phase(of: kernel), default: 0] += seconds }
            for (p, s) in sums { perPhase[p, default: []].append(s) }
        }
        return LayerPhase.parts.compactMap { p in
            guard let seconds = perPhase[p] else { return nil }
            return BenchmarkMeasurement(
                table: .gpu, engine: backend.rawValue, strategy: "layer", phase: p, samples: samples,
                epochSamples: settings.epochSamples, warmupPasses: 1, seconds: seconds,
                note: "device events around each kernel (\(engine.device.name))")
        }
    }

    /// `BenchmarkSuite.additionalEngines` entries for every device backend available here.
    public static func suiteEntries() -> [(name: String, measure: (Dataset, BenchmarkSettings) throws -> [BenchmarkMeasurement])] {
        DeviceBackend.allCases.filter { $0.availability().isAvailable }.map { backend in
            (
                "T5-7: \(backend.rawValue) layer kernels, device events",
                { data, settings in
                    try layerPhases(backend: backend, data: data, settings: settings)
                }
            )
        }
    }
}
