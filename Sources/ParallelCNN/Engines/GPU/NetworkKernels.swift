/// The device kernels of one described network, generated from its `Architecture`: the
/// prelude, the network's own passes (`Network+Device.cu`), then each layer's template
/// (`Layers/<Type>/<Type>+Device.cu`) pasted once per layer with that layer's shapes written as
/// constants in front of it, so the compiler sees every loop bound and offset. One text serves
/// OpenCL and NVRTC; kernel names carry the layer's type and number (`conv_forward_1`,
/// `conv_backward_1`, `pool_backward_2`), the CPU passes' names in C spelling.
public struct NetworkKernels: Sendable {
    public let architecture: Architecture
    /// The generated source, prelude included.
    public let source: String
    /// Per layer, its kernels.
    public let layers: [LayerKernels]
    /// Per layer, where its output (and its error) starts in one sample's activations.
    public let activationOffsets: [Int]

    /// The kernels of one layer, by name.
    public struct LayerKernels: Sendable {
        public let forward: String
        /// The error at the layer's input (nil for the first layer, whose input needs none).
        public let backwardInput: String?
        /// The parameter gradient, one work-group per parameter (`gradientSerial`: one work-item
        /// per parameter); nil for a layer without parameters.
        public let gradient: String?
        public let gradientSerial: String?
        /// Terms each parameter's gradient sums per sample.
        public let gradientTermsPerSample: Int
        public let parameterCount: Int
        /// The device functions behind the kernels, for the persistent kernel.
        let forwardItems: String
        let backwardInputItems: String?
        let gradientItems: String?
    }

    /// The persistent per-sample kernel: all passes and the update of many steps in one launch.
    public static let fusedKernel = "network_fused_steps"

    /// Compiler definitions shared by every kernel of the program.
    public var defines: [String: String] {
        [
            "GROUP_SIZE": String(KernelSource.groupSize), "NET_INPUT": String(architecture.input.count),
            "NET_CLASSES": String(architecture.classes), "NET_PARAMS": String(architecture.parameterCount)
        ]
    }

    public init(_ architecture: Architecture) {
        self.architecture = architecture
        var offsets: [Int] = [], offset = 0
        for layer in architecture.layers {
            offsets.append(offset)
            offset += layer.output.count
        }
        activationOffsets = offsets
        var text = [Self.template(PackageResources.prelude_cu), Self.template(PackageResources.Network_Device_cu)]
        var layers: [LayerKernels] = []
        for (i, layer) in architecture.layers.enumerated() {
            let (chunk, kernels) = Self.layerSource(layer, number: i + 1, isFirst: i == 0)
            text.append(chunk)
            layers.append(kernels)
        }
        self.layers = layers
        text.append(Self.fusedSource(architecture, layers: layers, offsets: offsets))
        source = text.joined(separator: "\n")
    }

    /// Kernel entry points of the generated source, for compile reports.
    public var kernelNames: [String] {
        ["input_gather", "output_backward", "output_predict", "network_update", Self.fusedKernel]
            + layers.flatMap { [$0.forward, $0.backwardInput, $0.gradient, $0.gradientSerial].compactMap { $0 } }
    }

    private static func template(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// The layer type's name in kernel names, and its template.
    private static func kind(_ spec: LayerSpec) -> (name: String, template: [UInt8], backwardInput: String) {
        switch spec {
        case .conv: ("conv", PackageResources.Conv_Device_cu, "conv_backward_input")
        case .subsample: ("subsample", PackageResources.Subsample_Device_cu, "subsample_backward_input")
        case .avgPool, .maxPool: ("pool", PackageResources.Pool_Device_cu, "pool_backward")
        case .dense: ("dense", PackageResources.Dense_Device_cu, "dense_backward_input")
        case .activation: ("activation", PackageResources.Activation_Device_cu, "activation_backward")
        }
    }

    /// One layer's template with its constants, the gradient template if it has parameters, and
    /// the kernel wrappers of its passes.
    private static func layerSource(_ layer: ArchitectureLayer, number n: Int, isFirst: Bool) -> (String, LayerKernels) {
        let (name, body, backwardInput) = kind(layer.spec)
        var constants: [(String, Int)] = [
            ("IN_C", layer.input.channels), ("IN_H", layer.input.height), ("IN_W", layer.input.width),
            ("OUT_C", layer.output.channels), ("OUT_H", layer.output.height), ("OUT_W", layer.output.width),
            ("IN_SIZE", layer.input.count), ("OUT_SIZE", layer.output.count), ("W_OFF", layer.weightOffset),
            ("B_OFF", layer.biasOffset), ("N_WEIGHTS", layer.weightCount), ("N_BIASES", layer.biasCount)
        ]
        var termsPerSample = 0
        switch layer.spec {
        case .conv(_, let k, let stride, let pad):
            constants += [("KSIZE", k), ("STRIDE", stride), ("PAD", pad)]
            termsPerSample = layer.output.planeSize
        case .subsample(let k):
            constants += [("KSIZE", k)]
            termsPerSample = layer.output.count
        case .avgPool(let size, let stride), .maxPool(let size, let stride):
            let isMax = if case .maxPool = layer.spec { 1 } else { 0 }
            constants += [("KSIZE", size), ("STRIDE", stride), ("POOL_MAX", isMax)]
        case .dense:
            termsPerSample = 1
        case .activation(let a):
            constants += [("ACTIVATION", [Activation.sigmoid, .tanh, .relu].firstIndex(of: a)!)]
        }
        var lines = ["/* Layer \(n): \(layer.spec.text), \(layer.input) -> \(layer.output). */"]
        lines.append("#define L(name) name##_\(n)")
        lines.append("#define TYPED(name) \(name)_##name##_\(n)")
        lines += constants.map { "#define \($0.0) \($0.1)" }
        lines.append(template(body))
        if layer.hasParameters { lines.append(template(PackageResources.ParameterGradient_Device_cu)) }
        let forward = "\(name)_forward_\(n)", input = "\(backwardInput)_\(n)"
        lines.append(
            """
            KERNEL \(forward)(GLOBAL const float* p, GLOBAL const float* x, int x_off, GLOBAL float* y, int y_off, int count) {
                \(name)_forward_items_\(n)(p, x + x_off, y + y_off, count, GLOBAL_ID, GLOBAL_SIZE);
            }
            """)
        if !isFirst {
            lines.append(
                """
                KERNEL \(input)(GLOBAL const float* p, GLOBAL const float* x, int x_off, GLOBAL const float* y, int y_off,
                                GLOBAL const float* dy, int dy_off, GLOBAL float* dx, int dx_off, int count) {
                    \(backwardInput)_items_\(n)(p, x + x_off, y + y_off, dy + dy_off, dx + dx_off, count, GLOBAL_ID, GLOBAL_SIZE);
                }
                """)
        }
        lines.append("#undef L")
        lines.append("#undef TYPED")
        lines += constants.map { "#undef \($0.0)" }
        let kernels = LayerKernels(
            forward: forward, backwardInput: isFirst ? nil : input,
            gradient: layer.hasParameters ? "\(name)_backward_\(n)" : nil,
            gradientSerial: layer.hasParameters ? "\(name)_backward_serial_\(n)" : nil,
            gradientTermsPerSample: termsPerSample, parameterCount: layer.weightCount + layer.biasCount,
            forwardItems: "\(name)_forward_items_\(n)", backwardInputItems: isFirst ? nil : "\(backwardInput)_items_\(n)",
            gradientItems: layer.hasParameters ? "\(name)_backward_items_\(n)" : nil)
        return (lines.joined(separator: "\n"), kernels)
    }

    /// The persistent kernel: one work-group runs every pass of one sample after another, a
    /// barrier between passes, and the update after each step, for the steps from `pos` to
    /// `end`. Activations use one sample's layout at the start of `acts` and `errs`.
    /// `step_factors` holds Adam's (step size, second-moment factor) per step of the launch.
    private static func fusedSource(_ architecture: Architecture, layers: [LayerKernels], offsets: [Int]) -> String {
        let all = "LID, GROUP_SIZE"
        var forward: [String] = [], backward: [String] = []
        for i in architecture.layers.indices {
            let x = i == 0 ? "input" : "acts + \(offsets[i - 1])", y = "acts + \(offsets[i])"
            forward.append("\(layers[i].forwardItems)(params, \(x), \(y), 1, \(all));")
            var passes: [String] = []
            if let gradient = layers[i].gradientItems {
                passes.append("\(gradient)(\(x), errs + \(offsets[i]), grads, 1, k > 0, \(all));")
            }
            if let input = layers[i].backwardInputItems {
                passes.append("\(input)(params, \(x), \(y), errs + \(offsets[i]), errs + \(offsets[i - 1]), 1, \(all));")
            }
            if !passes.isEmpty { backward.insert(passes.joined(separator: "\n                ") + "\n                BARRIER();", at: 0) }
        }
        let last = offsets[offsets.count - 1]
        return """
            /* The persistent per-sample kernel of this network (one work-group). */
            KERNEL \(fusedKernel)(GLOBAL float* params, GLOBAL float* velocity, GLOBAL float* second, GLOBAL float* grads,
                                  GLOBAL const float* scale, GLOBAL const u8* bytes, GLOBAL const float* floats,
                                  GLOBAL const float* pixel_table, int from_bytes, GLOBAL const u8* labels, GLOBAL const int* order,
                                  int pos, int end, int batch, int modern, GLOBAL float* losses, GLOBAL u8* wrong, int adam, float lr,
                                  float momentum, float beta2, float epsilon, GLOBAL const float* step_factors, GLOBAL float* acts,
                                  GLOBAL float* errs, GLOBAL float* input) {
                int step_index = 0;
                NO_UNROLL
                for (int start = pos; start < end; start += batch, ++step_index) {
                    int n = end - start < batch ? end - start : batch;
                    NO_UNROLL
                    for (int k = 0; k < n; ++k) {
                        input_gather_items(bytes, floats, pixel_table, from_bytes, order, start + k, input, 1, \(all));
                        BARRIER();
                        \(forward.joined(separator: "\n            BARRIER();\n            "))
                        BARRIER();
                        output_backward_items(acts + \(last), errs + \(last), labels, order, start + k, 1, modern, losses, wrong, \(all));
                        BARRIER();
                        \(backward.joined(separator: "\n            "))
                    }
                    network_update_items(params, velocity, second, grads, scale, (float)n, adam, lr, momentum, beta2, epsilon,
                                         step_factors[2 * step_index], step_factors[2 * step_index + 1], \(all));
                    BARRIER();
                }
            }
            """
    }
}
