import Foundation

extension EngineKind {
    public static let mpi = EngineKind(rawValue: "mpi")
}

extension EngineDescriptor {
    static let mpi = EngineDescriptor(
        kind: .mpi,
        summary: "Open MPI ranks (mpirun -np N): --strategy data (shards, Allreduce, --threads per rank) or layer (the paper's MPI design)",
        strategies: [.data, .layer],
        defaultThreads: { $0 == .layer ? nil : 1 },
        launcher: "mpirun",
        availability: {
            #if MPI
            .available(detail: "built with Open MPI; run under mpirun -np N")
            #else
            .unavailable(remedy: MPIAvailability.remedy)
            #endif
        },
        processGroup: {
            #if MPI
            try Communicator.world()
            #else
            throw EngineError.unavailable(engine: "mpi", remedy: MPIAvailability.remedy)
            #endif
        },
        make: { settings, parameters in
            #if MPI
            let world = try Communicator.world()
            world.messageDelay = try MessageDelay.seconds()
            return MPIEngine(
                parameters: parameters, communicator: world,
                strategy: settings.strategy ?? .data, threads: settings.threads,
                architecture: settings.architecture)
            #else
            throw EngineError.unavailable(engine: "mpi", remedy: MPIAvailability.remedy)
            #endif
        })
}

/// Whether this build has the `mpi` engine, and how to get it.
public enum MPIAvailability {
    /// Whether this build includes the `mpi` engine (the `MPI` package trait).
    public static var built: Bool {
        #if MPI
        true
        #else
        false
        #endif
    }

    public static let remedy = """
        this pcnn was built without MPI. Install Open MPI and rebuild with the MPI trait: \
        `apt-get install libopenmpi-dev openmpi-bin`, then `swift build -c release --traits MPI` \
        (scripts/setup and scripts/train do both when Open MPI is present), and run it under \
        `mpirun -np N pcnn train --engine mpi`
        """
}
