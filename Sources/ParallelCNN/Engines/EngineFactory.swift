/// How to build an engine: the `--engine` choice and its options.
public struct EngineConfiguration: Equatable, Sendable {
    public var kind: EngineKind

    public init(kind: EngineKind) {
        self.kind = kind
    }

    /// A new engine holding `parameters`.
    public func makeEngine(parameters: Parameters) throws -> any Engine {
        switch kind {
        case .reference: ReferenceEngine(parameters: parameters)
        case .sequential: SequentialEngine(parameters: parameters)
        }
    }
}
