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

    public static var defines: [String: String] { ["GROUP_SIZE": String(groupSize)] }
}
