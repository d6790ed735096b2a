#if MPI
import CMPI
#endif

/// How long one `MPI_Allreduce` takes: the communication cost of a data-parallel step, which
/// sums the gradient (`ParameterState.count` floats) and 3 doubles of statistics over all ranks.
public struct AllreduceTiming: Sendable {
    /// Elements per message and their type ("float" or "double").
    public let count: Int
    public let type: String
    /// Calls timed (after the untimed warm-up calls).
    public let repetitions: Int
    /// Median and mean seconds per call, as seen by rank 0 (an allreduce completes on every rank
    /// at about the same time, since each needs every other rank's contribution).
    public let median: Double
    public let mean: Double

    public init(count: Int, type: String, repetitions: Int, median: Double, mean: Double) {
        (self.count, self.type, self.repetitions, self.median, self.mean) = (count, type, repetitions, median, mean)
    }

    /// Floats in the gradient message of a data-parallel step (the parameters, padded to 8).
    public static let gradientCount = ParameterState.paddedCount(Parameters.count)
    /// Doubles in its statistics message (loss sum, misclassified, samples).
    public static let statisticsCount = 3

    /// Times both messages of a data-parallel step on the world communicator (call it on every
    /// rank under `mpirun`); returns the timings on rank 0, nil on the others.
    ///
    /// - Throws: `EngineError.unavailable` in a build without the MPI trait, or the `MPIError`
    ///   of starting MPI.
    public static func measureWorld(repetitions: Int) throws -> [AllreduceTiming]? {
        #if MPI
        let world = try Communicator.world()
        let timings = world.timeAllreduce(floats: gradientCount, doubles: statisticsCount, repetitions: repetitions)
        return world.rank == 0 ? timings : nil
        #else
        throw EngineError.unavailable(engine: "mpi", remedy: MPIAvailability.remedy)
        #endif
    }

    /// Times `MPI_Allreduce` (type "float") and `MPI_Allgatherv` (type "allgather", `count` the
    /// floats every rank ends with, split evenly; type "allgather-loaded" with 5 µs of work on
    /// every rank before each call, as in training) of each of `floatCounts` floats on the world
    /// communicator: the points the cost model fits α + β·bytes to. Returns the timings on rank
    /// 0, nil on the others.
    public static func measureCollectives(floatCounts: [Int], repetitions: Int) throws -> [AllreduceTiming]? {
        #if MPI
        let world = try Communicator.world()
        let timings = floatCounts.flatMap { count in
            [
                world.timeAllreduce(floats: count, doubles: 1, repetitions: repetitions)[0],
                world.timeAllgather(floats: count, repetitions: repetitions),
                world.timeAllgather(floats: count, repetitions: repetitions, workSeconds: 5e-6)
            ]
        }
        return world.rank == 0 ? timings : nil
        #else
        throw EngineError.unavailable(engine: "mpi", remedy: MPIAvailability.remedy)
        #endif
    }
}

#if MPI
extension Communicator {
    /// Times `MPI_Allreduce` (sum, in place, as the data strategy calls it) of `count` floats and
    /// of `doubleCount` doubles, `repetitions` calls each, after a barrier and `repetitions / 10`
    /// warm-up calls (connection set-up of the TCP transport happens on first use). Collective:
    /// every rank must call it with the same arguments.
    public func timeAllreduce(floats count: Int, doubles doubleCount: Int, repetitions: Int) -> [AllreduceTiming] {
        precondition(count >= 1 && doubleCount >= 1 && repetitions >= 1)
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: count)
        floats.initialize(repeating: 1, count: count)
        let doubles = UnsafeMutablePointer<Double>.allocate(capacity: doubleCount)
        doubles.initialize(repeating: 1, count: doubleCount)
        defer {
            floats.deallocate()
            doubles.deallocate()
        }
        func time(type: String, count: Int, _ call: () -> Void) -> AllreduceTiming {
            for _ in 0..<max(1, repetitions / 10) { call() }
            let code = MPI_Barrier(comm)
            if code != pcnn_mpi_success() { fail(MPIBarrierFailure(code: code)) }
            var seconds = [Double](repeating: 0, count: repetitions)
            for i in 0..<repetitions {
                let start = MPI_Wtime()
                call()
                seconds[i] = MPI_Wtime() - start
            }
            seconds.sort()
            return AllreduceTiming(
                count: count, type: type, repetitions: repetitions,
                median: seconds[repetitions / 2], mean: seconds.reduce(0, +) / Double(repetitions))
        }
        // Values grow by a factor `size` per call; reset them so that they never overflow.
        let gradient = time(type: "float", count: count) {
            allreduceSum(floats, count: count, context: "timing the gradient allreduce")
            floats.update(repeating: 1, count: count)
        }
        let statistics = time(type: "double", count: doubleCount) {
            allreduceSum(doubles, count: doubleCount, context: "timing the statistics allreduce")
            doubles.update(repeating: 1, count: doubleCount)
        }
        return [gradient, statistics]
    }

    /// Times `MPI_Allgatherv` of `count` floats in all, split evenly over the ranks, as the layer
    /// strategy's exchanges call it (in place). Collective.
    ///
    /// With `workSeconds`, every rank first spins that long before each call, as a rank computes
    /// between two exchanges in training: the ranks then arrive at slightly different times, and
    /// the call's time includes the wait for the later one.
    public func timeAllgather(floats count: Int, repetitions: Int, workSeconds: Double = 0) -> AllreduceTiming {
        precondition(count >= 1 && repetitions >= 1)
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        buffer.initialize(repeating: 1, count: count)
        let counts = UnsafeMutablePointer<Int32>.allocate(capacity: size)
        let displacements = UnsafeMutablePointer<Int32>.allocate(capacity: size)
        defer {
            buffer.deallocate()
            counts.deallocate()
            displacements.deallocate()
        }
        for r in 0..<size {
            let share = ShardPlan.share(of: count, rank: r, ranks: size)
            counts[r] = Int32(share.count)
            displacements[r] = Int32(share.lowerBound)
        }
        for _ in 0..<max(1, repetitions / 10) {
            allgatherv(buffer, counts: counts, displacements: displacements, context: "timing the allgather")
        }
        let code = MPI_Barrier(comm)
        if code != pcnn_mpi_success() { fail(MPIBarrierFailure(code: code)) }
        var seconds = [Double](repeating: 0, count: repetitions)
        for i in 0..<repetitions {
            MessageDelay.wait(workSeconds)
            let start = MPI_Wtime()
            allgatherv(buffer, counts: counts, displacements: displacements, context: "timing the allgather")
            seconds[i] = MPI_Wtime() - start
        }
        seconds.sort()
        return AllreduceTiming(
            count: count, type: workSeconds > 0 ? "allgather-loaded" : "allgather", repetitions: repetitions,
            median: seconds[repetitions / 2], mean: seconds.reduce(0, +) / Double(repetitions))
    }
}

private struct MPIBarrierFailure: Error, CustomStringConvertible {
    let code: Int32
    var description: String { "MPI_Barrier failed (timing the allreduce) [error \(code)]" }
}
#endif
