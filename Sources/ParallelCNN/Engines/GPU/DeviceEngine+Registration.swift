extension EngineKind {
    public static let opencl = EngineKind(rawValue: "opencl")
    public static let cuda = EngineKind(rawValue: "cuda")
}

extension EngineDescriptor {
    static let opencl = device(
        .opencl,
        summary:
            "any OpenCL 1.2 device (a GPU, or the CPU through PoCL): --strategy fused (persistent kernels) or layer (the paper's per-layer kernels), --device N"
    )
    static let cuda = device(
        .cuda,
        summary: "an NVIDIA GPU through the driver API, kernels compiled by NVRTC for its sm_XY: --strategy fused or layer, --device N")

    private static func device(_ backend: DeviceBackend, summary: String) -> EngineDescriptor {
        EngineDescriptor(
            kind: EngineKind(rawValue: backend.rawValue),
            onlyThePaperNetwork: true,
            summary: summary,
            strategies: [.fused, .layer],
            takesDevice: true,
            availability: { backend.availability() },
            make: { settings, parameters in
                try DeviceEngine(
                    backend: backend, strategy: settings.strategy ?? .fused,
                    device: settings.device, parameters: parameters)
            })
    }
}
