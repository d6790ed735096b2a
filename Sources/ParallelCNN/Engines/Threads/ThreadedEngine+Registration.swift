extension EngineKind {
    public static let threads = EngineKind(rawValue: "threads")
}

extension EngineDescriptor {
    static let threads = EngineDescriptor(
        kind: .threads,
        summary: "all cores: --strategy data (split each batch) or layer (split each layer, the paper's OpenMP design), --threads T",
        strategies: [.data, .layer],
        defaultThreads: { _ in EngineRegistry.availableCores },
        make: { settings, parameters in
            ThreadedEngine(
                parameters: parameters, threads: settings.threads,
                strategy: settings.strategy ?? .data, architecture: settings.architecture)
        })
}
