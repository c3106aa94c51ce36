import Dispatch
import Foundation
import GRDB
import SQLiteStorage
import Synchronization
import Testing
@testable import Audit

/// Stands in for `fdatasync` on the audit WAL (issue #21: the durability tests only counted syncs, so a log that
/// resumed callers before the sync returned would have passed). On entry it reads, through a connection of its
/// own, the newest committed entry: everything up to it is covered by this sync. It may hold the sync until the
/// test releases that call (never longer than `patience`), then calls the real `fdatasync` and only then publishes
/// how far the log is durable.
final class SyncProbe: Sendable {
    private struct State {
        var reader: DatabaseQueue?
        var calls = 0
        /// The newest committed sequence number when the first sync began.
        var coveredByFirstCall: Int64?
        /// Every entry up to here was committed before a sync that has returned.
        var durableThrough: Int64 = 0
        var failures: [String] = []
        /// Calls numbered up to here (from 1) may go on; later ones wait.
        var released: Int
    }
    private let state: Mutex<State>
    private let delayMicroseconds: UInt32

    init(held: Bool = false, delayMicroseconds: UInt32 = 0) {
        state = Mutex(State(released: held ? 0 : .max))
        self.delayMicroseconds = delayMicroseconds
    }

    /// Opens the probe's read connection on the audit database (which must exist: after the log is opened).
    func attach(_ path: String) throws {
        var configuration = Configuration()
        configuration.readonly = true
        let reader = try DatabaseQueue(path: path, configuration: configuration)
        state.withLock { $0.reader = reader }
    }

    /// The newest committed sequence number, read now.
    func committed() -> Int64? {
        guard let reader = state.withLock({ $0.reader }) else { return nil }
        return try? reader.read { try Int64.fetchOne($0, sql: "SELECT COALESCE(MAX(seq), 0) FROM entries") }
    }

    var calls: Int { state.withLock { $0.calls } }
    var coveredByFirstCall: Int64? { state.withLock { $0.coveredByFirstCall } }
    var durableThrough: Int64 { state.withLock { $0.durableThrough } }
    var failures: [String] { state.withLock { $0.failures } }

    /// Lets the first `calls` syncs through, or every sync.
    func release(calls: Int = .max) {
        state.withLock { $0.released = max($0.released, calls) }
    }

    @Sendable func sync(_ descriptor: Int32) -> Int32 {
        let covered = committed()
        let call = state.withLock { state in
            state.calls += 1
            if covered == nil { state.failures.append("the probe could not read the entries") }
            if state.calls == 1 { state.coveredByFirstCall = covered }
            return state.calls
        }
        let deadline = DispatchTime.now() + patience
        while state.withLock({ $0.released < call }) {
            if DispatchTime.now() >= deadline { state.withLock { $0.failures.append("sync \(call) was held \(patience) s") }; break }
            usleep(1_000)
        }
        if delayMicroseconds > 0 { usleep(delayMicroseconds) }
        let result = fdatasync(descriptor)
        if result == 0, let covered { state.withLock { $0.durableThrough = max($0.durableThrough, covered) } }
        return result
    }
}

/// What concurrent appends returned, as they returned.
final class AppendReturns: Sendable {
    private struct State {
        var sequences: [Int64] = []
        /// Returned while no returned sync had begun after their commit.
        var notYetDurable: [Int64] = []
        var errors: [String] = []
    }
    private let state = Mutex(State())

    var sequences: [Int64] { state.withLock { $0.sequences } }
    var notYetDurable: [Int64] { state.withLock { $0.notYetDurable } }
    var errors: [String] { state.withLock { $0.errors } }
    var finished: Int { state.withLock { $0.sequences.count + $0.errors.count } }

    /// Starts `tasks` concurrent callers of `perTask` appends each, each append after a random pause of up to
    /// `jitterMicroseconds` (so that entries also arrive while a sync runs, not only when callers return). Not
    /// awaited by the tests: a log that never resumes its callers must fail them, not hang them (they poll with a
    /// deadline instead).
    func start(_ log: AuditLog, tasks: Int, perTask: Int, jitterMicroseconds: Int = 0, probe: SyncProbe) {
        Task {
            await withTaskGroup(of: Void.self) { group in
                for t in 0..<tasks {
                    group.addTask {
                        for i in 0..<perTask {
                            if jitterMicroseconds > 0 { try? await Task.sleep(for: .microseconds(Int.random(in: 0...jitterMicroseconds))) }
                            do {
                                let entry = try await log.append(
                                    AuditRecord(
                                        actor: "c\(t)", role: "app", action: "events:write",
                                        resource: "/v1/events", outcome: .allowed, requestID: "r\(t)-\(i)"))
                                let durable = probe.durableThrough
                                self.state.withLock { state in
                                    state.sequences.append(entry.sequence)
                                    if durable < entry.sequence { state.notYetDurable.append(entry.sequence) }
                                }
                            } catch {
                                self.state.withLock { $0.errors.append("\(error)") }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How long a test waits for what must happen. Long on purpose: the whole suite runs in parallel on two cores, and
/// a CI run once kept these appenders' tasks off the cooperative pool for over 10 s. A wait returns as soon as its
/// condition holds, so only a failing test pays for it.
let patience: Double = 120

/// Polls `condition` until it holds or `patience` passes.
func eventually(_ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(patience * 1000))
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return true
}

/// The order behind "durable before the response": no append returns before a sync that began after its commit
/// has returned.
@Suite struct AuditSyncOrderTests {
    /// The WAL syncs are held: commits go on, but no caller may return. Then only the first sync returns: of the
    /// callers, only those whose entries were committed before it began may return, not those committed while it
    /// ran. Then all are released, and every caller returns, each after a sync covering its entry.
    @Test func noCallerReturnsBeforeTheSyncThatCoversItsEntry() async throws {
        let probe = SyncProbe(held: true)
        defer { probe.release() }  // never leaves a syncer thread waiting
        let f = try AuditFixture(checkpointInterval: 1000, fullSync: true, sync: probe.sync)
        try probe.attach(f.path)
        let returns = AppendReturns()
        returns.start(f.log, tasks: 8, perTask: 1, probe: probe)

        try #require(await eventually { probe.calls >= 1 }, "no append reached the WAL sync")
        let covered = try #require(probe.coveredByFirstCall)
        #expect(covered >= 1)
        // The writer does not wait for the disk: every entry commits while the sync is held.
        #expect(await eventually { probe.committed() == 8 })
        try await Task.sleep(for: .milliseconds(200))
        #expect(returns.sequences == [], "returned while every sync was held (the first covers 1...\(covered))")

        // Entries committed while the first sync is held; the sync that covers them is held too.
        returns.start(f.log, tasks: 8, perTask: 1, probe: probe)
        #expect(await eventually { probe.committed() == 16 })
        probe.release(calls: 1)
        #expect(await eventually { !returns.sequences.isEmpty }, "the first sync returned, and none of the entries it covers did")
        try await Task.sleep(for: .milliseconds(200))
        #expect(returns.sequences.filter { $0 > covered } == [], "returned before a sync that began after their commit returned")
        #expect(returns.errors == [])

        probe.release()
        try #require(await eventually { returns.finished == 16 }, "\(returns.finished) of 16 appends returned after the release")
        #expect(returns.errors == [])
        #expect(Set(returns.sequences) == Set(1...16))
        #expect(returns.notYetDurable == [], "returned before a sync covering them returned")
        #expect(probe.failures == [])
        #expect(f.log.stats.syncs >= 2)
        let result = try f.verify()
        #expect(result.intact && result.entries == 16)
    }

    /// Under load, with a slow sync and entries arriving while it runs: each append, when it returns, finds its entry
    /// covered by a sync that began after it was committed and has returned.
    @Test func everyAppendReturnsAfterASyncThatCoversIt() async throws {
        let probe = SyncProbe(delayMicroseconds: 2_000)
        let f = try AuditFixture(checkpointInterval: 1000, fullSync: true, sync: probe.sync)
        try probe.attach(f.path)
        let returns = AppendReturns()
        returns.start(f.log, tasks: 32, perTask: 10, jitterMicroseconds: 3_000, probe: probe)

        try #require(await eventually { returns.finished == 320 }, "\(returns.finished) of 320 appends returned")
        #expect(returns.errors == [])
        #expect(Set(returns.sequences) == Set(1...320))
        #expect(returns.notYetDurable == [], "\(returns.notYetDurable.count) appends returned before a sync covering them returned")
        #expect(probe.failures == [])
        #expect(probe.calls >= 1 && f.log.stats.syncs >= 1)
        #expect(try f.verify().entries == 320)
    }

    /// `audit: {sync: normal}`: an append returns on commit and never waits for a sync, even a held one.
    @Test func normalSyncReturnsOnCommitWithoutTheSync() async throws {
        let probe = SyncProbe(held: true)
        defer { probe.release() }
        let f = try AuditFixture(checkpointInterval: 1000, fullSync: false, sync: probe.sync)
        try probe.attach(f.path)
        let returns = AppendReturns()
        returns.start(f.log, tasks: 16, perTask: 1, probe: probe)

        try #require(await eventually { returns.finished == 16 }, "\(returns.finished) of 16 appends returned")
        #expect(returns.errors == [])
        #expect(Set(returns.sequences) == Set(1...16))
        #expect(probe.calls == 0)
        #expect(f.log.stats.syncs == 0)
    }
}
