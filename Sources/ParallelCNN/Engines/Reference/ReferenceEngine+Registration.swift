extension EngineKind {
    public static let reference = EngineKind(rawValue: "reference")
}

extension EngineDescriptor {
    static let reference = EngineDescriptor(
        kind: .reference,
        summary: "the oracle: SPEC's mathematics in plain loops and canonical order, exact and slow",
        make: { settings, parameters in ReferenceEngine(parameters: parameters, architecture: settings.architecture) })
}
