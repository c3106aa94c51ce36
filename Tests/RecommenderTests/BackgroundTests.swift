import Dispatch
import Foundation
import Synchronization
import Testing

@testable import Recommender

#if canImport(Glibc)
    import Glibc

    /// A retrain beside serving must leave the cores to the requests: its parallel loops run on threads of their own at
    /// a lower priority, and the dispatch pool that serves everyone keeps its priority afterwards.
    @Suite struct BackgroundTests {
        static func nice() -> Int32 { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }

        @Test func backgroundLoopsRunOnLowPriorityThreadsAndThePoolKeepsItsPriority() async throws {
            let base = Self.nice()
            let (outer, inner) = try await Background.run { () -> (Int32, [Int32]) in
                let seen = Mutex<[Int32]>([])
                DispatchQueueShim.concurrentPerform(iterations: 16) { _ in
                    let n = Self.nice()
                    seen.withLock { $0.append(n) }
                }
                return (Self.nice(), seen.withLock { $0 })
            }
            let lowered = min(base + Background.niceIncrement, 19)
            #expect(outer == lowered)
            #expect(inner.count == 16 && inner.allSatisfy { $0 == lowered }, "\(inner)")
            let pool = Mutex<[Int32]>([])
            DispatchQueue.concurrentPerform(iterations: 16) { _ in
                let n = Self.nice()
                pool.withLock { $0.append(n) }
            }
            #expect(pool.withLock { $0 }.allSatisfy { $0 == base }, "the dispatch pool's threads lost their priority")
        }

        /// The same fit in the background and in the foreground: the split of work does not depend on who runs it.
        @Test func aFitInTheBackgroundEqualsOneInTheForeground() async throws {
            var rng = SeededGenerator(seed: 4)
            var interactions: [Interaction] = []
            for u in 0..<300 {
                for _ in 0..<15 { interactions.append(Interaction(user: Int32(u), item: Int32(rng.next() % 5000))) }
            }
            let matrix = SparseMatrix(users: 300, items: 5000, interactions: interactions)
            let foreground = ItemKNN(threads: 2).fit(matrix)
            let background = try await Background.run { ItemKNN(threads: 2).fit(matrix) }
            #expect(foreground.similarities.indices == background.similarities.indices)
            #expect(foreground.similarities.values == background.similarities.values)
        }
    }
#endif
