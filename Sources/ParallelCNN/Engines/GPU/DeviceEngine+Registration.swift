extension EngineKind {
    public static let opencl = EngineKind(rawValue: "opencl")
    public static let cuda = EngineKind(rawValue: "cuda")
}

extension EngineDescriptor {
    static let opencl = device(
        .opencl,
        summary:
            "any OpenCL 1.2 device (a GPU, or the CPU through PoCL): --strategy fused (one persistent kernel, per sample), layer (per-layer kernels per sample) or data (per-layer kernels over the whole batch), --device N"
    )
    static let cuda = device(
        .cuda,
        summary:
            "an NVIDIA GPU through the driver API, kernels compiled by NVRTC for its sm_XY: --strategy fused, layer or data, --device N")

    private static func device(_ backend: DeviceBackend, summary: String) -> EngineDescriptor {
        EngineDescriptor(
            kind: EngineKind(rawValue: backend.rawValue),
            summary: summary,
            strategies: [.fused, .layer, .data],
            takesDevice: true,
            availability: { backend.availability() },
            make: { settings, parameters in
                let strategy = settings.strategy ?? .fused
                // The paper's network keeps its specialised kernels (SPEC's per-sample rule);
                // every other network, and any network over whole batches, runs generated ones.
                if settings.architecture.isPaper && strategy != .data {
                    return try DeviceEngine(backend: backend, strategy: strategy, device: settings.device, parameters: parameters)
                }
                return try DeviceNetworkEngine(
                    backend: backend, strategy: strategy, device: settings.device, architecture: settings.architecture,
                    parameters: parameters)
            })
    }
}
