/// A training engine for any described network on an OpenCL or CUDA device, running the kernels
/// `NetworkKernels` generates for it. Three strategies:
/// - `data`: one launch per layer pass over all the samples of a step (what GPU users run);
/// - `layer`: the same kernels launched per sample (the paper's CUDA design, launch-bound);
/// - `fused`: one persistent work-group runs every pass of every sample and the updates of
///   thousands of steps in one launch (the per-sample question with a constant number of launches).
///
/// Semantics are `ReferenceNetwork`'s: a step's per-sample gradients, all from the same
/// parameters, are summed, then `UpdateRule`'s update with the architecture's per-parameter
/// factors. Sums run in a fixed order (no float atomics), so two runs on one device give the same
/// parameters bit for bit; they differ from the reference in rounding only. The training set is
/// uploaded once, as bytes where it has them.
public final class DeviceNetworkEngine: Engine {
    public let device: any ComputeDevice
    public let strategy: EngineStrategy
    public let kernels: NetworkKernels
    public var architecture: Architecture { kernels.architecture }
    public var description: String { "\(device.backend)(\(strategy), \(architecture.network), \(device.name))" }

    /// The persistent kernel runs at most this many steps per launch.
    public var stepsPerLaunch = 5_000
    /// A step's gradient of a parameter with fewer terms than this is summed by one work-item
    /// (`gradientSerial`) rather than by a work-group.
    static let workGroupSumThreshold = 64

    private let groupSize = KernelSource.groupSize
    private var parameterCount: Int { architecture.parameterCount }
    private var compiled: [String: DeviceKernel] = [:]
    private let buffers: DeviceParameterBuffers
    private var params: DeviceBuffer { buffers.params }
    private var velocity: DeviceBuffer { buffers.velocity }
    private var secondMoment: DeviceBuffer { buffers.secondMoment }
    private let grads, scale, pixelTable, unused: DeviceBuffer

    // The training set.
    private var trainImages: DeviceImages?
    private var labels: DeviceBuffer?
    private var trainingCount = 0

    // Epoch state.
    private var order, losses, wrong: DeviceBuffer?
    private var orderCount = 0
    private var batchSize = 1
    private var rule = UpdateRule(recipe: .original)
    private var epochStart = 0
    private var readBack = DeviceStatisticsReader()
    private var scaleFor: (recipe: Recipe, batchSize: Int)?
    public private(set) var position = 0

    // Activations and errors of `capacity` samples: layer l's at capacity * activationOffsets[l].
    private var capacity = 0
    private var acts, errs, input, stepFactors, predictClasses: DeviceBuffer?

    /// Compiles the network's kernels for `device` and holds `parameters` (zero optimizer state).
    public init(device: any ComputeDevice, strategy: EngineStrategy, architecture: Architecture, parameters: Parameters) throws {
        self.device = device
        self.strategy = strategy
        kernels = NetworkKernels(architecture)
        try device.compile(source: kernels.source, defines: kernels.defines)
        for name in kernels.kernelNames { compiled[name] = try device.kernel(name) }
        buffers = try DeviceParameterBuffers(device: device, count: architecture.parameterCount)
        grads = try device.allocate(bytes: architecture.parameterCount * 4)
        scale = try device.allocate(bytes: architecture.parameterCount * 4)
        (pixelTable, unused) = try DeviceImages.tables(on: device)
        try load(parameters: parameters)
    }

    public convenience init(
        backend: DeviceBackend, strategy: EngineStrategy, device index: Int = 0, architecture: Architecture, parameters: Parameters
    ) throws {
        try self.init(device: try backend.open(device: index), strategy: strategy, architecture: architecture, parameters: parameters)
    }

    deinit {
        let optional = [trainImages?.buffer, labels, order, losses, wrong, acts, errs, input, stepFactors, predictClasses]
        for b in optional.compactMap({ $0 }) + [grads, scale, pixelTable, unused] { device.free(b) }
    }

    // MARK: State

    public func prepare(training data: Dataset) throws {
        for b in [trainImages?.buffer, labels].compactMap({ $0 }) { device.free(b) }
        guard data.shape == architecture.input else {
            throw EngineError.misuse("\(device.backend): the data's images are \(data.shape), the network's input \(architecture.input)")
        }
        trainImages = try DeviceImages(data, range: 0..<data.count, on: device)
        labels = try device.allocate(bytes: max(data.count, 1))
        try device.write(labels!, array: data.labels)
        trainingCount = data.count
    }

    public func load(parameters: Parameters, optimizerState: OptimizerState) throws { try buffers.load(parameters, optimizerState) }

    public func currentParameters() throws -> Parameters { try buffers.parameters() }

    public func currentOptimizerState() throws -> OptimizerState { try buffers.optimizerState() }

    public func synchronize() throws { try device.synchronize() }

    /// Makes room for the activations and errors of `samples` samples.
    private func reserve(samples: Int) throws {
        guard samples > capacity else { return }
        let floats = samples * architecture.activationCount
        guard floats <= Int(Int32.max) / 2, samples * architecture.input.count <= Int(Int32.max) / 2 else {
            throw EngineError.invalidOption(
                engine: device.backend, message: "\(samples) samples of \(architecture.network) do not fit the device's 32-bit offsets")
        }
        for b in [acts, errs, input].compactMap({ $0 }) { device.free(b) }
        acts = try device.allocate(bytes: floats * 4)
        errs = try device.allocate(bytes: floats * 4)
        input = try device.allocate(bytes: samples * architecture.input.count * 4)
        capacity = samples
    }

    /// Samples per prediction launch: up to 1024, fewer for a large network.
    private var predictionChunk: Int { max(1, min(1024, (1 << 24) / max(architecture.activationCount, 1))) }

    // MARK: Training

    public func beginEpoch(_ plan: EpochPlan, at position: Int) throws {
        guard trainImages != nil else { throw EngineError.misuse("\(device.backend): beginEpoch before prepare(training:)") }
        guard plan.order.allSatisfy({ $0 >= 0 && Int($0) < trainingCount }) else {
            throw EngineError.misuse("\(device.backend): the epoch order indexes outside the \(trainingCount) prepared samples")
        }
        guard (0...plan.order.count).contains(position) else {
            throw EngineError.misuse("\(device.backend): position \(position) out of range")
        }
        try reserve(samples: strategy == .data ? plan.batchSize : 1)
        if plan.order.count != orderCount || order == nil {
            for b in [order, losses, wrong].compactMap({ $0 }) { device.free(b) }
            order = try device.allocate(bytes: max(plan.order.count, 1) * 4)
            losses = try device.allocate(bytes: max(plan.order.count, 1) * 4)
            wrong = try device.allocate(bytes: max(plan.order.count, 1))
            orderCount = plan.order.count
        }
        try device.write(order!, array: plan.order)
        if scaleFor?.recipe != plan.rule.recipe || scaleFor?.batchSize != plan.rule.batchSize {
            try device.write(scale, array: architecture.scaleVector(recipe: plan.rule.recipe, batchSize: plan.rule.batchSize))
            scaleFor = (plan.rule.recipe, plan.rule.batchSize)
        }
        try buffers.prepare(for: plan.rule)
        batchSize = plan.batchSize
        rule = plan.rule
        epochStart = position
        self.position = position
        readBack = DeviceStatisticsReader(start: position, batchSize: batchSize)
    }

    public func train(until end: Int) throws {
        guard order != nil, trainImages != nil else {
            throw EngineError.misuse("\(device.backend): train before prepare(training:) and beginEpoch")
        }
        guard end <= orderCount, end >= position, end == orderCount || (end - epochStart) % batchSize == 0 else {
            throw EngineError.misuse("\(device.backend): train(until: \(end)) is not a step boundary of this epoch")
        }
        if strategy == .fused {
            try trainFused(until: end)
            return
        }
        while position < end {
            let n = min(batchSize, end - position)
            if strategy == .data {
                try launchStep(samples: n, at: position, accumulate: false)
            } else {
                for k in 0..<n { try launchStep(samples: 1, at: position + k, accumulate: k > 0) }
            }
            try launchUpdate(samples: n)
            position += n
        }
    }

    private var modern: Int32 { rule.recipe == .modern ? 1 : 0 }

    /// Queues `name` over enough work-groups for `items` work-items (the kernels loop over the rest).
    private func launch(_ name: String, items: Int, _ arguments: [KernelArgument]) throws {
        let groups = max(1, min((items + groupSize - 1) / groupSize, 65_535))
        try launch(name, groups: groups, arguments)
    }

    private func launch(_ name: String, groups: Int, _ arguments: [KernelArgument]) throws {
        guard let kernel = compiled[name] else { throw DeviceError.usage("no kernel \(name) in the generated program") }
        try device.launch(kernel, groups: groups, groupSize: groupSize, arguments: arguments)
    }

    /// Layer l's output (and error) offset in the activation buffers, in floats.
    private func offset(_ l: Int) -> Int32 { Int32(capacity * kernels.activationOffsets[l]) }

    /// Forward passes of `n` samples whose images are `pixels[order[pos ..< pos + n]]`.
    private func launchForward(samples n: Int, images: DeviceImages, order: DeviceBuffer, at pos: Int) throws {
        guard let acts, let input else { return }
        try launch(
            "input_gather", items: n * architecture.input.count,
            images.arguments(pixelTable: pixelTable, unused: unused) + [
                .buffer(order), .int32(Int32(pos)), .buffer(input), .int32(Int32(n))
            ])
        for (l, layer) in architecture.layers.enumerated() {
            let x: (DeviceBuffer, Int32) = l == 0 ? (input, 0) : (acts, offset(l - 1))
            try launch(
                kernels.layers[l].forward, items: n * layer.output.count,
                [.buffer(params), .buffer(x.0), .int32(x.1), .buffer(acts), .int32(offset(l)), .int32(Int32(n))])
        }
    }

    /// One step's forward and backward passes for `n` samples from position `pos`; the
    /// parameter gradients are stored in `grads`, or added to them (`accumulate`).
    private func launchStep(samples n: Int, at pos: Int, accumulate: Bool) throws {
        guard let acts, let errs, let input, let order, let losses, let wrong, let labels, let trainImages else { return }
        try launchForward(samples: n, images: trainImages, order: order, at: pos)
        let last = architecture.layers.count - 1
        try launch(
            "output_backward", items: n,
            [
                .buffer(acts), .int32(offset(last)), .buffer(errs), .int32(offset(last)), .buffer(labels), .buffer(order),
                .int32(Int32(pos)), .int32(Int32(n)), .int32(modern), .buffer(losses), .buffer(wrong)
            ])
        for l in stride(from: last, through: 0, by: -1) {
            let layer = architecture.layers[l], k = kernels.layers[l]
            let x: (DeviceBuffer, Int32) = l == 0 ? (input, 0) : (acts, offset(l - 1))
            if let gradient = k.gradient, let serial = k.gradientSerial {
                let arguments: [KernelArgument] = [
                    .buffer(x.0), .int32(x.1), .buffer(errs), .int32(offset(l)), .buffer(grads), .int32(Int32(n)),
                    .int32(accumulate ? 1 : 0)
                ]
                if n * k.gradientTermsPerSample >= Self.workGroupSumThreshold {
                    try launch(gradient, groups: min(k.parameterCount, 65_535), arguments)
                } else {
                    try launch(serial, items: k.parameterCount, arguments)
                }
            }
            if let backwardInput = k.backwardInput {
                try launch(
                    backwardInput, items: n * layer.input.count,
                    [
                        .buffer(params), .buffer(x.0), .int32(x.1), .buffer(acts), .int32(offset(l)), .buffer(errs), .int32(offset(l)),
                        .buffer(errs), .int32(offset(l - 1)), .int32(Int32(n))
                    ])
            }
        }
    }

    /// The step that starts at `position`, over the `samples` gradients summed in `grads`.
    private func launchUpdate(samples: Int) throws {
        let rule = self.rule.advanced(by: position / batchSize)
        let (stepSize, secondMomentFactor) = rule.adamFactors
        try launch(
            "network_update", items: parameterCount,
            [
                .buffer(params), .buffer(velocity), .buffer(secondMoment), .buffer(grads), .buffer(scale), .float(Float(samples)),
                .int32(rule.optimizer == .adam ? 1 : 0), .float(rule.learningRate), .float(rule.momentum), .float(UpdateRule.adamBeta2),
                .float(UpdateRule.adamEpsilon), .float(stepSize), .float(secondMomentFactor)
            ])
        buffers.stepped(with: rule)
    }

    /// The persistent kernel over whole steps, `stepsPerLaunch` at a time, with each step's Adam
    /// factors uploaded in front of its launch.
    private func trainFused(until end: Int) throws {
        guard let acts, let errs, let input, let order, let losses, let wrong, let labels, let trainImages else { return }
        if (stepFactors?.bytes ?? 0) < 2 * stepsPerLaunch * 4 {
            if let stepFactors { device.free(stepFactors) }
            stepFactors = try device.allocate(bytes: 2 * stepsPerLaunch * 4)
        }
        while position < end {
            // The last launch may still read the factors' buffer.
            try device.synchronize()
            let steps = min(stepsPerLaunch, (end - position + batchSize - 1) / batchSize)
            let launchEnd = min(position + steps * batchSize, end)
            var factors: [Float] = []
            factors.reserveCapacity(2 * steps)
            for s in 0..<steps {
                let (stepSize, secondMomentFactor) = rule.advanced(by: position / batchSize + s).adamFactors
                factors += [stepSize, secondMomentFactor]
            }
            try device.write(stepFactors!, array: factors)
            try launch(
                NetworkKernels.fusedKernel, groups: 1,
                [
                    .buffer(params), .buffer(velocity), .buffer(secondMoment), .buffer(grads), .buffer(scale)
                ] + trainImages.arguments(pixelTable: pixelTable, unused: unused) + [
                    .buffer(labels), .buffer(order), .int32(Int32(position)), .int32(Int32(launchEnd)),
                    .int32(Int32(batchSize)), .int32(modern), .buffer(losses), .buffer(wrong), .int32(rule.optimizer == .adam ? 1 : 0),
                    .float(rule.learningRate), .float(rule.momentum), .float(UpdateRule.adamBeta2), .float(UpdateRule.adamEpsilon),
                    .buffer(stepFactors!), .buffer(acts), .buffer(errs), .buffer(input)
                ])
            position = launchEnd
        }
        buffers.stepped(with: rule)
    }

    public func statistics() throws -> TrainingStatistics {
        guard let losses, let wrong else { return readBack.accumulated }
        return try readBack.read(device, losses: losses, wrong: wrong, upTo: position)
    }

    // MARK: Prediction

    public func predict(_ data: Dataset, range: Range<Int>, recipe: Recipe, into predictions: UnsafeMutableBufferPointer<UInt8>) throws {
        guard !range.isEmpty else { return }
        guard data.shape == architecture.input else {
            throw EngineError.misuse("\(device.backend): the data's images are \(data.shape), the network's input \(architecture.input)")
        }
        let chunk = predictionChunk
        try reserve(samples: chunk)
        if predictClasses == nil { predictClasses = try device.allocate(bytes: chunk) }
        guard let acts, let predictClasses else { return }
        // The range's images and an identity order over them, uploaded once per call; each
        // chunk starts at its own position in that order.
        let images = try DeviceImages(data, range: range, on: device)
        defer { device.free(images.buffer) }
        let order = try device.allocate(bytes: range.count * 4)
        defer { device.free(order) }
        try device.write(order, array: (0..<Int32(range.count)).map { $0 })
        var start = range.lowerBound
        while start < range.upperBound {
            let n = min(chunk, range.upperBound - start)
            try launchForward(samples: n, images: images, order: order, at: start - range.lowerBound)
            try launch(
                "output_predict", items: n,
                [
                    .buffer(acts), .int32(offset(architecture.layers.count - 1)), .int32(Int32(n)), .int32(recipe == .modern ? 1 : 0),
                    .buffer(predictClasses)
                ])
            let k = start - range.lowerBound
            try device.read(
                predictClasses, offset: 0,
                into: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(predictions)[k..<(k + n)]))
            start += n
        }
    }
}
