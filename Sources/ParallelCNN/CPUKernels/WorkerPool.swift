import _CPUVector
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// A persistent team of threads that runs one job on every member and waits for all of them:
/// the fork-join of an OpenMP `parallel` region, at about a microsecond per region.
///
/// The caller is member 0; members 1..<T are threads that spin on a generation counter for a
/// short while after each job (a job usually follows within microseconds), then park on a
/// condition variable so an idle pool costs no CPU.
package final class WorkerPool: @unchecked Sendable {
    let size: Int

    private let generation = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// The next unclaimed item of a `runClaiming` job.
    private let nextItem = Atomic<Int>(0)
    /// The job of the current generation; written before the generation is published.
    private var job: ((Int) -> Void)?
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var threads: [pthread_t] = []

    /// Spin iterations before a worker parks: about a hundred microseconds, or almost none when
    /// there are more threads than cores (a spinning thread would steal a working one's core).
    private let spinLimit: Int

    package init(size: Int) {
        precondition(size >= 1)
        self.size = size
        spinLimit = size > ProcessInfo.processInfo.activeProcessorCount ? 64 : 5_000
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        for member in 1..<size {
            let context = Unmanaged.passRetained(WorkerContext(pool: self, member: member)).toOpaque()
            var thread = pthread_t()
            let status = pthread_create(
                &thread, nil,
                { raw in
                    let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
                    context.pool.workerLoop(member: context.member)
                    return nil
                }, context)
            precondition(status == 0, "pthread_create failed: \(status)")
            threads.append(thread)
        }
    }

    deinit {
        stopping.store(true, ordering: .sequentiallyConsistent)
        generation.add(1, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(wake)
        pthread_mutex_unlock(mutex)
        for thread in threads { pthread_join(thread, nil) }
        pthread_mutex_destroy(mutex)
        pthread_cond_destroy(wake)
        mutex.deallocate()
        wake.deallocate()
    }

    /// Runs `body(member)` for every member 0..<size, member 0 on the calling thread, and
    /// returns when all are done.
    package func run(_ body: @escaping (Int) -> Void) {
        guard size > 1 else { return body(0) }
        job = body
        finished.store(0, ordering: .relaxed)
        generation.add(1, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(wake)
            pthread_mutex_unlock(mutex)
        }
        body(0)
        var spins = 0
        while finished.load(ordering: .acquiring) < size - 1 {
            spins += 1
            spinPause(spins)
        }
        job = nil
    }

    /// Runs `body(member, item)` for every item in `0..<count`, each claimed by whichever member
    /// is free first: a member on a slower (or busier) core simply takes fewer items. Member 0
    /// then runs `afterwards` while the others may still finish their last items.
    func runClaiming(
        items count: Int, _ body: @escaping (_ member: Int, _ item: Int) -> Void,
        afterwards: @escaping () -> Void = {}
    ) {
        nextItem.store(0, ordering: .relaxed)
        run { member in
            while true {
                let item = self.nextItem.add(1, ordering: .relaxed).oldValue
                if item >= count { break }
                body(member, item)
            }
            if member == 0 { afterwards() }
        }
    }

    private func workerLoop(member: Int) {
        var seen = 0
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins < spinLimit {
                    spinPause(spins)
                    continue
                }
                pthread_mutex_lock(mutex)
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while generation.load(ordering: .sequentiallyConsistent) == seen {
                    pthread_cond_wait(wake, mutex)
                }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(mutex)
            }
            seen = generation.load(ordering: .acquiring)
            if stopping.load(ordering: .acquiring) { return }
            job?(member)
            finished.add(1, ordering: .releasing)
        }
    }

    /// Splits `0..<count` into `size` contiguous parts; part `member`.
    func share(of count: Int, member: Int) -> Range<Int> {
        (count * member / size)..<(count * (member + 1) / size)
    }
}

private final class WorkerContext {
    let pool: WorkerPool
    let member: Int
    init(pool: WorkerPool, member: Int) {
        self.pool = pool
        self.member = member
    }
}

/// One iteration of a spin-wait: a `pause`, and every 256th time a `sched_yield`. On a machine
/// whose cores are shared with other work, the member being waited for may have lost its core; the
/// yield hands it over instead of burning the rest of the time slice (on an idle core it returns
/// at once, about 0.2 µs per 256 spins).
@inline(__always) func spinPause(_ spins: Int) {
    pcnn_pause()
    if spins & 255 == 0 { sched_yield() }
}
