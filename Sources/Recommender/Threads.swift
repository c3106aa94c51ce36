import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

enum DispatchQueueShim {
    /// `DispatchQueue.concurrentPerform`, except inside ``Background/run(_:)``: there the iterations run on threads
    /// of its own at the background priority, not on the dispatch pool's, which serve everyone.
    static func concurrentPerform(iterations: Int, _ body: @Sendable (Int) -> Void) {
        if Background.isCurrent, iterations > 1 {
            Background.perform(iterations: iterations, body)
        } else {
            DispatchQueue.concurrentPerform(iterations: iterations, execute: body)
        }
    }
}

/// Work that must not slow down serving, such as a retrain beside live traffic: it runs on threads started for it at
/// a lower scheduling priority (nice +10 on Linux: about a tenth of a core's share against a busy thread at the
/// default), and the recommender's parallel loops inside it start more such threads instead of borrowing the
/// dispatch pool's. Threads of their own because a priority, once lowered, cannot be raised again by an unprivileged
/// process: a pool thread lowered for training would serve requests at that priority ever after.
public enum Background {
    /// Runs `body` on a new background thread; the caller's task waits without holding a thread. Where no thread can
    /// be started (a process at its thread limit), on a dispatch thread at the normal priority.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let work: @Sendable () -> Void = { continuation.resume(with: Result { try body() }) }
            if !start(work) { DispatchQueue.global().async(execute: work) }
        }
    }

    /// True on a thread started by ``run(_:)`` or by a parallel loop inside it.
    static var isCurrent: Bool { Thread.current.threadDictionary[key] != nil }

    private static let key = "veil.background"

    /// How far background threads lower their priority: nice +10 (Linux; elsewhere the priority is left as it is).
    static let niceIncrement: Int32 = 10

    /// Starts a detached thread at the background priority that runs `body`; false when none could be started.
    private static func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        // A thread started by a background thread inherits its lowered priority: lowered once, not again.
        let job = Job(body, lower: !isCurrent)
        #if canImport(Glibc)
            let context = Unmanaged.passRetained(job).toOpaque()
            let attributes = UnsafeMutablePointer<pthread_attr_t>.allocate(capacity: 1)
            pthread_attr_init(attributes)
            pthread_attr_setstacksize(attributes, 8 << 20)
            pthread_attr_setdetachstate(attributes, Int32(PTHREAD_CREATE_DETACHED))
            var thread: pthread_t = 0
            let result = pthread_create(&thread, attributes, backgroundThreadEntry, context)
            pthread_attr_destroy(attributes)
            attributes.deallocate()
            if result != 0 { Unmanaged<Job>.fromOpaque(context).release() }
            return result == 0
        #else
            let thread = Thread { job.run() }
            thread.stackSize = 8 << 20
            thread.start()
            return true
        #endif
    }

    /// What a background thread runs.
    fileprivate final class Job: Sendable {
        let body: @Sendable () -> Void
        let lower: Bool

        init(_ body: @escaping @Sendable () -> Void, lower: Bool) {
            self.body = body
            self.lower = lower
        }

        func run() {
            #if canImport(Glibc)
                if lower {
                    // Relative to the process's own: a server already niced stays below its requests. On Linux the
                    // nice value is per thread, and `who` 0 names the calling thread.
                    errno = 0
                    let current = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
                    if errno == 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, min(19, current + niceIncrement)) }
                }
            #endif
            Thread.current.threadDictionary[key] = true
            body()
        }
    }

    /// `concurrentPerform` on background threads: as many workers as cores (the caller is one of them), each taking
    /// the next iteration until none is left.
    static func perform(iterations: Int, _ body: @Sendable (Int) -> Void) {
        guard iterations > 0 else { return }
        let workers = min(iterations, max(1, ProcessInfo.processInfo.activeProcessorCount))
        withoutActuallyEscaping(body) { body in
            // The workers reach `body` only through the shared state, which lets go of it before this block ends:
            // a thread still winding down must not hold the closure past its scope.
            let shared = Shared(body)
            let done = DispatchGroup()
            for _ in 1..<workers {
                done.enter()
                let started = start {
                    shared.loop(iterations)
                    done.leave()
                }
                if !started { done.leave() }
            }
            shared.loop(iterations)
            done.wait()
            shared.release()
        }
    }

    /// The next iteration to run and the loop body, shared by the workers of one ``perform(iterations:_:)``.
    private final class Shared: @unchecked Sendable {
        private let lock = NSLock()
        private var next = 0
        private var body: ((Int) -> Void)?

        init(_ body: @escaping (Int) -> Void) { self.body = body }

        func loop(_ iterations: Int) {
            while true {
                lock.lock()
                let i = next
                next += 1
                let body = self.body
                lock.unlock()
                guard i < iterations, let body else { return }
                body(i)
            }
        }

        func release() {
            lock.lock()
            body = nil
            lock.unlock()
        }
    }
}

#if canImport(Glibc)
    private func backgroundThreadEntry(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        Unmanaged<Background.Job>.fromOpaque(context!).takeRetainedValue().run()
        return nil
    }
#endif

/// A mutable buffer shared by threads that write disjoint ranges of it.
struct SharedBuffer<T>: @unchecked Sendable {
    let base: UnsafeMutablePointer<T>
    init(_ base: UnsafeMutablePointer<T>) { self.base = base }
}

extension Array {
    /// Gives `body` a pointer that may be shared by threads writing disjoint elements.
    mutating func withShared<R>(_ body: (SharedBuffer<Element>) throws -> R) rethrows -> R {
        try withUnsafeMutableBufferPointer { try body(SharedBuffer($0.baseAddress!)) }
    }
}
