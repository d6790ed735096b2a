/// The kernel source shared by the OpenCL and CUDA backends: the files of `Kernels/`, embedded
/// into the binary at build time (SwiftPM `embedInCode`), so a static `pcnn` carries them.
public enum KernelSource {
    /// Work-items per work-group for every kernel (a multiple of 32: whole CUDA warps).
    public static let groupSize = 256

    /// Prelude, network functions, then the kernels of both strategies, in that order.
    public static let text: String = [
        PackageResources.prelude_cu, PackageResources.network_cu, PackageResources.fused_cu, PackageResources.layer_cu
    ].map { String(decoding: $0, as: UTF8.self) }.joined(separator: "\n")

    /// Kernel entry points, for compile reports.
    public static var kernelNames: [String] {
        var names: [String] = []
        // "KERNEL name(" or "KERNEL_SIZED(n) name(".
        for line in text.split(separator: "\n") where line.hasPrefix("KERNEL ") || line.hasPrefix("KERNEL_SIZED(") {
            var rest = line.dropFirst("KERNEL".count)
            if rest.hasPrefix("_SIZED("), let close = rest.firstIndex(of: ")") { rest = rest[rest.index(after: close)...] }
            rest = rest.drop { $0 == " " }
            if let paren = rest.firstIndex(of: "(") { names.append(String(rest[..<paren])) }
        }
        return names
    }

    /// The layer kernels' workspace of one sample, in floats: each part's offset, laid out in
    /// this order, and the size.
    public enum LayerWorkspace {
        static let c1 = 0
        static let s1 = c1 + Network.channels * Network.convMapSize
        static let outputs = s1 + Network.poolOutputs
        static let errors = outputs + Network.classes
        static let s1Errors = errors + Network.classes
        static let c1Errors = s1Errors + Network.poolOutputs
        static let s1WeightGradient = c1Errors + Network.channels * Network.convMapSize
        /// Floats in all (7380).
        public static let size = s1WeightGradient + Network.poolKernel * Network.poolKernel
    }

    /// Every constant the kernels share with Swift, defined once here and passed to the compiler
    /// (`-D`): the group size, the paper's shapes (`Network`), the parameter offsets
    /// (`Parameters.Offset`) and the layer workspace (`LayerWorkspace`).
    public static var defines: [String: String] {
        let values: [String: Int] = [
            "GROUP_SIZE": groupSize,
            "IMG": Network.imageSide, "PIXELS": Network.imagePixels, "CH": Network.channels, "K1": Network.convKernel,
            "H1": Network.convSide, "MAP1": Network.convMapSize, "C1_SIZE": Network.channels * Network.convMapSize,
            "K2": Network.poolKernel, "H2": Network.poolSide, "S1_SIZE": Network.poolOutputs, "CLASSES": Network.classes,
            "OFF_C1W": Parameters.Offset.c1Weight, "OFF_C1B": Parameters.Offset.c1Bias, "OFF_S1W": Parameters.Offset.s1Weight,
            "OFF_S1B": Parameters.Offset.s1Bias, "OFF_FW": Parameters.Offset.fWeight, "OFF_FB": Parameters.Offset.fBias,
            "NPARAM": Parameters.count,
            "WS_C1": LayerWorkspace.c1, "WS_S1": LayerWorkspace.s1, "WS_OUT": LayerWorkspace.outputs,
            "WS_ERR": LayerWorkspace.errors, "WS_S1E": LayerWorkspace.s1Errors, "WS_C1E": LayerWorkspace.c1Errors,
            "WS_GS1": LayerWorkspace.s1WeightGradient, "WS_SIZE": LayerWorkspace.size
        ]
        return values.mapValues { String($0) }
    }
}
