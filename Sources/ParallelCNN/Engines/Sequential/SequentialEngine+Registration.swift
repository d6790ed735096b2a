extension EngineKind {
    public static let sequential = EngineKind(rawValue: "sequential")
}

extension EngineDescriptor {
    static let sequential = EngineDescriptor(
        kind: .sequential,
        summary: "the fast single-core baseline: vector kernels, no allocation per sample",
        make: { settings, parameters in SequentialEngine(parameters: parameters, architecture: settings.architecture) })
}
