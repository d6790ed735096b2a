/// The device backends.
public enum DeviceBackend: String, CaseIterable, Sendable {
    case opencl, cuda

    /// Whether this machine can run the backend, and if not, the one-line remedy.
    public func availability() -> EngineAvailability {
        switch self {
        case .opencl: OpenCLDevice.availability()
        case .cuda: CUDADevice.availability()
        }
    }

    /// Opens device `index` of the backend.
    public func open(device index: Int = 0) throws -> any ComputeDevice {
        switch self {
        case .opencl: try OpenCLDevice(index: index)
        case .cuda: try CUDADevice(index: index)
        }
    }
}

/// A training engine on an OpenCL or CUDA device (see `EngineStrategy`). The training set is
/// uploaded once (`prepare`), an epoch's order once per epoch (`beginEpoch`); `train(until:)`
/// queues all the steps up to a position without waiting; per-sample losses and misclassified
/// flags stay on the device until `statistics()` reads them.
///
/// Semantics are the reference engine's: with batch 1 and no momentum the SPEC's per-sample
/// step (biases updated term by term while back-propagating); otherwise a batch's per-sample
/// gradients, all from the same parameters, are summed in sample order, then
/// `v ← μ v + Σg / B`, `θ ← θ + lr · v`. Every sum has a fixed order, so two runs on one
/// device give the same parameters bit for bit.
public final class DeviceEngine: Engine {
    public let device: any ComputeDevice
    public let strategy: EngineStrategy
    public var description: String { "\(device.backend)(\(strategy), \(device.name))" }

    /// Per-sample SGD launches at most this many samples (the fused kernel's persistent loop).
    public var samplesPerLaunch = 20_000

    private let groupSize = KernelSource.groupSize
    private let buffers: DeviceParameterBuffers
    private var params: DeviceBuffer { buffers.params }
    private var velocity: DeviceBuffer { buffers.velocity }
    private var secondMoment: DeviceBuffer { buffers.secondMoment }
    /// The optimizer kernels every minibatch step launches, looked up once.
    private let momentumUpdate: DeviceKernel
    private let adamUpdate: DeviceKernel
    private var images: DeviceImages?
    private let pixelTable, unused: DeviceBuffer
    private var labels: DeviceBuffer?
    private var trainingCount = 0

    // Epoch state.
    private var order: DeviceBuffer?
    private var losses: DeviceBuffer?
    private var wrong: DeviceBuffer?
    private var grads: DeviceBuffer?
    private var gradsCapacity = 0
    private var orderCount = 0
    private var batchSize = 1
    private var rule = UpdateRule(recipe: .original)
    private var epochStart = 0
    private var readBack = DeviceStatisticsReader()
    public private(set) var position = 0

    // Prediction scratch.
    private var predictClasses: DeviceBuffer?

    // The layer strategy's activations and errors of one sample.
    private var workspace: DeviceBuffer?

    /// Compiles the kernels for `device` and holds `parameters` (zero optimizer state).
    public init(device: any ComputeDevice, strategy: EngineStrategy, parameters: Parameters) throws {
        self.device = device
        precondition(strategy != .data, "a device engine runs fused or layer")
        self.strategy = strategy
        try device.compile(source: KernelSource.text, defines: KernelSource.defines)
        momentumUpdate = try device.kernel("batch_update")
        adamUpdate = try device.kernel("adam_update")
        buffers = try DeviceParameterBuffers(device: device, count: Parameters.count)
        (pixelTable, unused) = try DeviceImages.tables(on: device)
        try load(parameters: parameters)
    }

    /// Opens device `index` of `backend` and compiles the kernels there.
    public convenience init(backend: DeviceBackend, strategy: EngineStrategy, device index: Int = 0, parameters: Parameters) throws {
        try self.init(device: try backend.open(device: index), strategy: strategy, parameters: parameters)
    }

    deinit {
        for b in [images?.buffer, labels, order, losses, wrong, grads, predictClasses].compactMap({ $0 }) { device.free(b) }
        device.free(pixelTable)
        device.free(unused)
        if let workspace { device.free(workspace) }
    }

    // MARK: State

    /// Uploads the training set; `beginEpoch` orders index into it.
    public func prepare(training data: Dataset) throws {
        guard data.shape == .mnist else {
            throw EngineError.misuse("\(device.backend): the paper's kernels take 1x28x28 images, not \(data.shape)")
        }
        if let images { device.free(images.buffer) }
        if let labels { device.free(labels) }
        images = try DeviceImages(data, range: 0..<data.count, on: device)
        labels = try device.allocate(bytes: max(data.count, 1))
        try device.write(labels!, array: data.labels)
        trainingCount = data.count
    }

    public func load(parameters: Parameters, optimizerState: OptimizerState) throws { try buffers.load(parameters, optimizerState) }

    public func currentParameters() throws -> Parameters { try buffers.parameters() }

    public func currentOptimizerState() throws -> OptimizerState { try buffers.optimizerState() }

    public func synchronize() throws { try device.synchronize() }

    // MARK: Training

    /// Starts (or resumes, at `position`) an epoch: the plan's order (indices into the prepared
    /// training set) is uploaded once; clears the statistics.
    public func beginEpoch(_ plan: EpochPlan, at position: Int) throws {
        try beginEpoch(order: plan.order, batchSize: plan.batchSize, rule: plan.rule, at: position)
    }

    /// `beginEpoch(_:at:)` with the plan's parts.
    public func beginEpoch(order newOrder: [Int32], batchSize: Int, rule: UpdateRule, at position: Int) throws {
        guard let _ = images else { throw EngineError.misuse("\(device.backend): beginEpoch before prepare(training:)") }
        guard newOrder.allSatisfy({ $0 >= 0 && Int($0) < trainingCount }) else {
            throw EngineError.misuse("\(device.backend): the epoch order indexes outside the \(trainingCount) prepared samples")
        }
        guard batchSize >= 1, (0...newOrder.count).contains(position) else {
            throw EngineError.misuse("\(device.backend): batch size \(batchSize) or position \(position) out of range")
        }
        if newOrder.count != orderCount || order == nil {
            for b in [order, losses, wrong].compactMap({ $0 }) { device.free(b) }
            order = try device.allocate(bytes: newOrder.count * 4)
            losses = try device.allocate(bytes: newOrder.count * 4)
            wrong = try device.allocate(bytes: newOrder.count)
            orderCount = newOrder.count
        }
        try device.write(order!, array: newOrder)
        if batchSize > gradsCapacity {
            if let grads { device.free(grads) }
            grads = try device.allocate(bytes: batchSize * Parameters.count * 4)
            gradsCapacity = batchSize
        }
        try buffers.prepare(for: rule)
        self.batchSize = batchSize
        self.rule = rule
        epochStart = position
        self.position = position
        readBack = DeviceStatisticsReader(start: position, batchSize: batchSize)
    }

    /// Whether steps follow the SPEC's per-sample rule (biases updated while back-propagating).
    private var faithful: Bool { batchSize == 1 && !rule.usesVelocity }

    /// The c1 divisor with the recipe's batch step factor folded in (576 / min(4B, 576) at B > 1).
    private var c1Divisor: Float {
        rule.recipe == .original ? Float(Network.convMapSize) / rule.recipe.stepFactor(.c1Weight, batchSize: rule.batchSize) : 1
    }
    private var s1BiasDivisor: Float { rule.recipe == .original ? Float(Network.poolOutputs) : 1 }
    private var modern: Int32 { rule.recipe == .modern ? 1 : 0 }

    /// Queues the steps from the current position up to `end` (a step boundary or the order's end).
    public func train(until end: Int) throws {
        guard let order, let losses, let wrong, let images, let labels else {
            throw EngineError.misuse("\(device.backend): train before prepare(training:) and beginEpoch")
        }
        guard end <= orderCount, end >= position,
            end == orderCount || (end - epochStart) % batchSize == 0
        else {
            throw EngineError.misuse("\(device.backend): train(until: \(end)) is not a step boundary of this epoch")
        }
        switch (strategy, faithful) {
        case (.fused, true):
            let kernel = try device.kernel("fused_sgd")
            while position < end {
                let n = min(samplesPerLaunch, end - position)
                try device.launch(
                    kernel, groups: 1, groupSize: groupSize,
                    arguments: [
                        .buffer(params)
                    ] + images.arguments(pixelTable: pixelTable, unused: unused) + [
                        .buffer(labels), .buffer(order), .int32(Int32(position)), .int32(Int32(n)),
                        .buffer(losses), .buffer(wrong), .float(rule.learningRate), .float(c1Divisor), .float(s1BiasDivisor), .int32(modern)
                    ])
                position += n
            }
        case (.fused, false):
            let gradient = try device.kernel("fused_batch_gradient")
            while position < end {
                let n = min(batchSize, end - position)
                try device.launch(
                    gradient, groups: n, groupSize: groupSize,
                    arguments: [
                        .buffer(params)
                    ] + images.arguments(pixelTable: pixelTable, unused: unused) + [
                        .buffer(labels), .buffer(order), .int32(Int32(position)), .buffer(grads!),
                        .buffer(losses), .buffer(wrong), .float(c1Divisor), .float(s1BiasDivisor), .int32(modern)
                    ])
                try launchUpdate(samples: n)
                position += n
            }
        case (.layer, _), (.data, _):
            try trainLayers(until: end)
        }
    }

    /// Queues the optimizer step that starts at `position`, over the `samples` gradients in `grads`.
    private func launchUpdate(samples: Int) throws {
        let rule = self.rule.advanced(by: position / batchSize)
        let groups = (Parameters.count + groupSize - 1) / groupSize
        switch rule.optimizer {
        case .sgd:
            try device.launch(
                momentumUpdate, groups: groups, groupSize: groupSize,
                arguments: [
                    .buffer(params), .buffer(velocity), .buffer(grads!), .int32(Int32(samples)), .float(rule.learningRate),
                    .float(rule.momentum)
                ])
        case .adam:
            let (stepSize, secondMomentFactor) = rule.adamFactors
            try device.launch(
                adamUpdate, groups: groups, groupSize: groupSize,
                arguments: [
                    .buffer(params), .buffer(velocity), .buffer(secondMoment), .buffer(grads!), .int32(Int32(samples)),
                    .float(rule.momentum), .float(UpdateRule.adamBeta2), .float(UpdateRule.adamEpsilon), .float(stepSize),
                    .float(secondMomentFactor)
                ])
        }
        buffers.stepped(with: rule)
    }

    /// Statistics of the steps since `beginEpoch` (waits for them).
    public func statistics() throws -> TrainingStatistics {
        guard let losses, let wrong else { return readBack.accumulated }
        return try readBack.read(device, losses: losses, wrong: wrong, upTo: position)
    }

    // MARK: Prediction

    /// Predicted classes of `data[range]`.
    public func predict(_ data: Dataset, range: Range<Int>, recipe: Recipe, into predictions: UnsafeMutableBufferPointer<UInt8>) throws {
        guard !range.isEmpty else { return }
        let n = range.count
        if (predictClasses?.bytes ?? 0) < n {
            if let predictClasses { device.free(predictClasses) }
            predictClasses = try device.allocate(bytes: n)
        }
        let images = try DeviceImages(data, range: range, on: device)
        defer { device.free(images.buffer) }
        try device.launch(
            try device.kernel("fused_predict"), groups: min(n, 4096), groupSize: groupSize,
            arguments: [.buffer(params)] + images.arguments(pixelTable: pixelTable, unused: unused) + [
                .int32(Int32(n)), .buffer(predictClasses!), .int32(recipe == .modern ? 1 : 0)
            ])
        try device.read(
            predictClasses!, offset: 0, into: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(predictions)[0..<n]))
    }

    // MARK: Layer strategy

    /// Workspace floats of the layer kernels (`WS_SIZE` in layer.cu).
    static let layerWorkspaceFloats = KernelSource.LayerWorkspace.size

    /// The layer kernels of one sample, in launch order, with their grids (blocks x threads).
    static let layerKernels: [(name: String, groups: Int, groupSize: Int)] = [
        ("conv_forward_c1", 6, 576), ("subsample_forward_s1", 6, 36), ("dense_forward_f", 1, 32), ("dense_backward_input_f", 6, 36),
        ("dense_backward_f", 10, 216), ("subsample_backward_s1", 1, 32), ("subsample_backward_input_s1", 6, 576),
        ("conv_backward_c1", 6, 32)
    ]

    /// Eight launches per sample; with batches, one `batch_update` per step.
    private func trainLayers(until end: Int) throws {
        guard let order, let losses, let wrong, let images, let labels, let grads else { return }
        let imageArguments = images.arguments(pixelTable: pixelTable, unused: unused)
        if workspace == nil { workspace = try device.allocate(bytes: Self.layerWorkspaceFloats * 4) }
        let ws = workspace!
        let k = try Self.layerKernels.map { try device.kernel($0.name) }
        let apply: Int32 = faithful ? 1 : 0
        let dt = rule.learningRate
        while position < end {
            let n = min(batchSize, end - position)
            for slot in 0..<n {
                let pos = Int32(position + slot)
                let s = Int32(slot)
                let args: [[KernelArgument]] = [
                    [.buffer(params)] + imageArguments + [.buffer(order), .int32(pos), .buffer(ws)],
                    [.buffer(params), .buffer(ws)],
                    [
                        .buffer(params), .buffer(labels), .buffer(order), .int32(pos), .buffer(ws), .buffer(losses), .buffer(wrong),
                        .int32(modern)
                    ],
                    [.buffer(params), .buffer(ws)],
                    [.buffer(params), .buffer(grads), .int32(s), .buffer(ws), .float(dt), .int32(apply)],
                    [.buffer(params), .buffer(grads), .int32(s), .buffer(ws), .float(dt), .float(s1BiasDivisor), .int32(apply)],
                    [.buffer(params), .buffer(ws)],
                    [
                        .buffer(params)
                    ] + imageArguments + [
                        .buffer(order), .int32(pos), .buffer(grads), .int32(s), .buffer(ws), .float(dt),
                        .float(c1Divisor), .int32(apply)
                    ]
                ]
                for (i, spec) in Self.layerKernels.enumerated() {
                    try device.launch(k[i], groups: spec.groups, groupSize: spec.groupSize, arguments: args[i])
                }
            }
            if !faithful { try launchUpdate(samples: n) }
            position += n
        }
    }
}
