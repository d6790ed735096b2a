import Foundation

/// How to build an engine: the `--engine` choice and its options.
public struct EngineConfiguration: Equatable, Sendable {
    public var kind: EngineKind
    /// Threads of the `threads` engine.
    public var threads: Int
    /// Work split of the `threads` engine.
    public var strategy: ThreadStrategy

    public init(kind: EngineKind, threads: Int = EngineConfiguration.availableCores, strategy: ThreadStrategy = .data) {
        self.kind = kind
        self.threads = threads
        self.strategy = strategy
    }

    /// Cores this process may run on.
    public static var availableCores: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// A new engine holding `parameters`.
    public func makeEngine(parameters: Parameters) throws -> any Engine {
        switch kind {
        case .reference: ReferenceEngine(parameters: parameters)
        case .sequential: SequentialEngine(parameters: parameters)
        case .threads: ThreadedEngine(parameters: parameters, threads: threads, strategy: strategy)
        }
    }
}
