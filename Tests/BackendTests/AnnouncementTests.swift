import Foundation
import Persistence
import PostgresNIO
@testable import PostgresStorage
import Storage
import Synchronization
import TestSupport
import Testing

/// What one gateway's transaction announces reaches every other gateway watching the same PostgreSQL database, only
/// if it commits; a missed announcement makes the watcher forget everything (resync) instead of going on silently.
@Suite struct AnnouncementTests {
    /// The signals one watcher reported, in order.
    final class Seen: Sendable {
        let signals = Mutex<[InvalidationSignal]>([])
        var all: [InvalidationSignal] { signals.withLock { $0 } }
        var resyncs: Int { all.filter { $0 == .resync }.count }

        /// Waits (at most 10 s) until `done` holds for what was seen.
        func until(_ what: String, _ done: ([InvalidationSignal]) -> Bool) async throws {
            for _ in 0..<1000 {
                if done(all) { return }
                try await Task.sleep(for: .milliseconds(10))
            }
            Issue.record("timed out waiting for \(what); seen: \(all)")
        }
    }

    static func watch(_ store: PostgresStore) -> (Seen, Task<Void, Never>) {
        let seen = Seen()
        let task = Task { await store.watchInvalidations { signal in seen.signals.withLock { $0.append(signal) } } }
        return (seen, task)
    }

    static let tokenA = String(repeating: "a", count: 64), tokenB = String(repeating: "b", count: 64)

    @Test func aCommittedAnnouncementReachesTheOtherGatewayAndARolledBackOneNever() async throws {
        let settings = try TestBackend.freshDatabase()
        let a = try PostgresStore(settings: settings), b = try PostgresStore(settings: settings)
        let (seenByB, watchB) = Self.watch(b)
        let (seenByA, watchA) = Self.watch(a)
        defer { watchA.cancel(); watchB.cancel() }
        try await seenByB.until("the first resync") { $0 == [.resync] }
        try await seenByA.until("the first resync") { $0 == [.resync] }

        struct Abandoned: Error {}
        await #expect(throws: Abandoned.self) {
            try await a.write { tx in
                try tx.announce([.forgotten(token: Self.tokenB, unlearn: true)])
                throw Abandoned()
            }
        }
        try await a.write { try $0.announce([.forgotten(token: Self.tokenA, unlearn: true), .links, .principals, .subject(token: Self.tokenA)]) }
        // The write returned after A's own watch received it (generation 1: the rolled-back one bumped nothing), so B
        // has been sent it at the same commit.
        #expect(a.echoes.seen == 1)
        try await seenByB.until("the committed announcement") { $0.count == 5 }
        #expect(
            Set(seenByB.all.dropFirst())
                == [.apply(.forgotten(token: Self.tokenA, unlearn: true)), .apply(.links), .apply(.principals), .apply(.subject(token: Self.tokenA))])
        #expect(!seenByB.all.contains(.apply(.forgotten(token: Self.tokenB, unlearn: true))), "a rolled-back announcement arrived")
        // A does not apply its own announcements a second time.
        try await Task.sleep(for: .milliseconds(200))
        #expect(seenByA.all == [.resync])
    }

    @Test func aMissedGenerationOrAnOversizedAnnouncementMakesTheWatcherForgetEverything() async throws {
        let settings = try TestBackend.freshDatabase()
        let a = try PostgresStore(settings: settings), b = try PostgresStore(settings: settings)
        let (seenByB, watchB) = Self.watch(b)
        defer { watchB.cancel() }
        try await seenByB.until("the first resync") { $0 == [.resync] }

        // More tokens than a notification carries: the others are told to forget everything.
        let many = (0..<200).map { Invalidation.forgotten(token: String(format: "%064x", $0), unlearn: true) }
        try await a.write { try $0.announce(many) }
        try await seenByB.until("a resync for the oversized announcement") { $0.filter { $0 == .resync }.count == 2 }
        #expect(!seenByB.all.contains { if case .apply = $0 { true } else { false } })

        // A notification lost, then the next one arrives: its generation skips one, so B resyncs instead of applying
        // it as if nothing were missed.
        let admin = try Admin(settings)
        defer { admin.close() }
        try admin.run("UPDATE veil_generation SET value = value + 1 WHERE id = 1")
        try await a.write { try $0.announce([.subject(token: Self.tokenB)]) }
        try await seenByB.until("a resync for the skipped generation") { $0.filter { $0 == .resync }.count == 3 }
        #expect(!seenByB.all.contains(.apply(.subject(token: Self.tokenB))))
        // A generation bumped and no notification after it at all: the heartbeat finds the database ahead of what
        // arrived and resyncs within a few seconds.
        try admin.run("UPDATE veil_generation SET value = value + 1 WHERE id = 1")
        try await seenByB.until("a resync for the missed generation") { $0.filter { $0 == .resync }.count == 4 }
        // And the next announcement applies normally again; the watch never broke.
        try await a.write { try $0.announce([.subject(token: Self.tokenA)]) }
        try await seenByB.until("the next announcement") { $0.last == .apply(.subject(token: Self.tokenA)) }
        #expect(!seenByB.all.contains(.lost))
    }

    @Test func aStoreNoOtherGatewaySharesHasNothingToWatch() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("veil-ann-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = try TestBackend.sqlite.makeStore(directory: dir)
        #expect(!store.isShared)
        let reported = Mutex(false)
        await store.watchInvalidations { _ in reported.withLock { $0 = true } }
        #expect(!reported.withLock { $0 })
        try await store.write { try $0.announce([.links]) }
    }
}

/// A write that announced returns only once its own gateway's watch has received the announcement (which PostgreSQL
/// sends to every gateway at the same commit), and never waits for a watch that is down.
@Suite struct EchoTests {
    /// The longest a waiter here may wait, in seconds: far past any scheduling delay of a loaded parallel run, so a
    /// waiter that returns early was released, not timed out.
    static let patience: Double = 120

    /// Runs `body` on a Dispatch thread: a wait on a semaphore must not hold one of the cooperative pool's threads,
    /// which the tests beside it (and this one's sleeps) need.
    static func onThread(_ body: @escaping @Sendable () -> Void) -> Task<Void, Never> {
        Task {
            await withCheckedContinuation { done in
                DispatchQueue.global().async {
                    body(); done.resume()
                }
            }
        }
    }

    @Test func aWriterWaitsForItsOwnAnnouncementOnlyWhileWatching() async throws {
        let echoes = Echoes()
        let start = ContinuousClock.now
        echoes.wait(for: 5, timeout: 5)
        #expect(ContinuousClock.now - start < .seconds(1), "not watching: no wait")

        echoes.watching(true)
        echoes.saw(4)
        let returned = Mutex(false)
        let waiter = Self.onThread {
            echoes.wait(for: 5, timeout: Self.patience)
            returned.withLock { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(!returned.withLock { $0 }, "returned before its generation was seen")
        echoes.saw(5)
        await waiter.value
        #expect(returned.withLock { $0 })

        // A watch that goes down releases whoever waits.
        let second = Self.onThread { echoes.wait(for: 9, timeout: Self.patience) }
        try await Task.sleep(for: .milliseconds(100))
        let released = ContinuousClock.now
        echoes.watching(false)
        await second.value
        #expect(ContinuousClock.now - released < .seconds(Self.patience / 2), "waited for its timeout")
    }

    /// A writer also waits for every other gateway heard from to say it applied the announcement.
    @Test func aWriterWaitsForEveryOtherGatewayAliveToApplyIt() async throws {
        // A lifetime no scheduling delay of a loaded test run reaches.
        let echoes = Echoes(peerLifetime: 600)
        echoes.watching(true)
        echoes.peer("other", applied: 4)
        echoes.saw(5)
        let returned = Mutex(false)
        let waiter = Self.onThread {
            echoes.wait(for: 5, timeout: Self.patience)
            returned.withLock { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(!returned.withLock { $0 }, "returned before the other gateway applied its announcement")
        echoes.peer("other", applied: 5)
        await waiter.value
        #expect(returned.withLock { $0 })
    }

    /// A gateway that stopped speaking (killed) is not waited for once its lifetime is over.
    @Test func aSilentGatewayIsNotWaitedForPastItsLifetime() async throws {
        let echoes = Echoes(peerLifetime: 0.2)
        echoes.watching(true)
        echoes.peer("killed", applied: 4)
        echoes.saw(5)
        try await Task.sleep(for: .milliseconds(300))
        let start = ContinuousClock.now
        await Self.onThread { echoes.wait(for: 5, timeout: Self.patience) }.value
        #expect(ContinuousClock.now - start < .seconds(Self.patience / 2), "waited for a gateway silent past its lifetime")
    }
}

/// Across two stores on one database: the writer answers only once the other has applied its announcement.
@Suite struct AppliedTests {
    @Test func aWriteReturnsOnlyOnceTheOtherGatewayHasAppliedItsAnnouncement() async throws {
        let settings = try TestBackend.freshDatabase()
        let a = try PostgresStore(settings: settings), b = try PostgresStore(settings: settings)
        let applied = Mutex(false)
        let (seenByA, watchA) = AnnouncementTests.watch(a)
        // B applies slowly (a model forgetting a subject, on a loaded gateway).
        let watchB = Task {
            await b.watchInvalidations { signal in
                guard case .apply = signal else { return }
                Thread.sleep(forTimeInterval: 0.3)
                applied.withLock { $0 = true }
            }
        }
        defer { watchA.cancel(); watchB.cancel() }
        try await seenByA.until("A's first resync") { $0.contains(.resync) }
        for _ in 0..<500 where a.echoes.alivePeers == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(a.echoes.alivePeers == 1, "A never heard from B")

        try await a.write { try $0.announce([.links]) }
        #expect(applied.withLock { $0 }, "A's write returned before B had applied its announcement")
    }
}
