import Foundation
import VeilCore
import GRDB
import SQLiteStorage
import Gateway
import HTTPTypes
import Hummingbird
import Policy
import HummingbirdTesting
import Pseudonymization
import Storage
import Synchronization
import Testing

/// Issue #21, item 17: the operational database commits without a sync, so a consent change (a grant, and a
/// withdrawal that shreds and scrubs the WAL first), an erasure, an identity link and unlink and a principal's
/// revocation must each wait for an fsync of the WAL that began after its commit
/// before they are acknowledged. The sync is held by a test function: the acknowledgement must not come while it
/// is held. Syncs that run before the change commits pass unheld; if none runs after it, the test fails.
@Suite(.serialized) struct DurableChangeTests {
    /// Runs `change` with the WAL sync held; `committed` (read on another connection while the sync is held) says
    /// whether the change is in the database by then.
    static func expectAcknowledgedOnlyAfterASyncThatCoversIt(
        _ f: GatewayFixture, _ what: String, committed: @escaping @Sendable () throws -> Bool,
        change: @escaping @Sendable () async throws -> Void
    ) async throws {
        let (entered, enteredContinuation) = AsyncStream<Bool>.makeStream()
        let release = DispatchSemaphore(value: 0)
        let held = Mutex(true)
        let waited = Mutex<DispatchTimeoutResult?>(nil)
        // Set once the held sync's fdatasync has returned: the change may be acknowledged only after that.
        let syncReturned = Mutex(false)
        f.service.sqlite.walSyncer.replaceSyncFunction { fd in
            // Syncs before the change commits (a withdrawal makes its subtraction from the anonymous counts durable
            // before shredding) pass; the first one that sees it committed is held.
            guard (try? committed()) == true,
                held.withLock({
                    let was = $0; $0 = false; return was
                })
            else { return fdatasync(fd) }
            enteredContinuation.yield(true)
            let result = release.wait(timeout: .now() + 300)  // only a deadlock waits this long; a starved run may need more than 30 s
            waited.withLock { $0 = result }
            let status = fdatasync(fd)
            syncReturned.withLock { $0 = true }
            return status
        }
        defer { f.service.sqlite.walSyncer.replaceSyncFunction { fdatasync($0) } }
        let acknowledged = Mutex(false)
        let task = Task { () async throws -> Bool in
            defer { enteredContinuation.finish() }  // acknowledged without any sync: the wait below ends with nil
            try await change()
            acknowledged.withLock { $0 = true }
            return syncReturned.withLock { $0 }
        }
        var iterator = entered.makeAsyncIterator()
        let committedWhenSyncBegan = await iterator.next()
        #expect(committedWhenSyncBegan == true, "\(what): the sync that acknowledges it began before its commit (or none ran)")
        // A quick look for an early acknowledgement; the deterministic check is `syncReturned` below.
        try await Task.sleep(for: .milliseconds(200))
        #expect(!acknowledged.withLock { $0 }, "\(what) was acknowledged while the sync covering it was still running")
        release.signal()
        let afterSync = try await task.value
        #expect(acknowledged.withLock { $0 })
        #expect(afterSync, "\(what) was acknowledged before the held sync's fdatasync returned")
        #expect(committedWhenSyncBegan == nil || waited.withLock { $0 } == .success, "\(what): the held sync timed out before the test released it")
    }

    @Test(sqliteOnly) func consentChangesErasuresLinksUnlinksAndRevocationsWaitForTheirSync() async throws {
        let f = try GatewayFixture()
        let roles = Set(f.service.policy.roles.keys)
        _ = try f.service.principals.add(name: "to-revoke", role: "app", knownRoles: roles)
        let store = f.service.sqlite
        @Sendable func count(_ sql: String, _ arguments: StatementArguments = []) throws -> Int {
            try store.pool.read { try Int.fetchOne($0, sql: sql, arguments: arguments) ?? 0 }
        }
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 3)
            let token = f.token("durable@example.com").rawValue
            try await Self.expectAcknowledgedOnlyAfterASyncThatCoversIt(
                f, "a consent change",
                committed: {
                    try count("SELECT count(*) FROM consent_events WHERE token = ?", [token]) == 1
                }
            ) {
                let r = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("durable@example.com"))
                #expect(r.status == 201)
            }
            let erased = f.token("shopper-1@example.com").rawValue
            try await Self.expectAcknowledgedOnlyAfterASyncThatCoversIt(
                f, "an erasure",
                committed: {
                    try count("SELECT count(*) FROM interactions WHERE token = ?", [erased]) == 0
                }
            ) {
                let r = try await client.call(.post, "/v1/subjects/shopper-1%40example.com/erase", key: f.keys["compliance-officer"])
                #expect(r.status == 200)
            }
            // A withdrawal of a subject with data: it shreds, scrubs the WAL, then syncs.
            let withdrawn = f.token("shopper-2@example.com").rawValue
            #expect(try f.hasData("shopper-2@example.com"))
            let eventsBefore = try count("SELECT count(*) FROM consent_events WHERE token = ?", [withdrawn])
            try await Self.expectAcknowledgedOnlyAfterASyncThatCoversIt(
                f, "a consent withdrawal",
                committed: {
                    try count("SELECT count(*) FROM consent_events WHERE token = ?", [withdrawn]) == eventsBefore + 1
                        && count("SELECT count(*) FROM consent_state WHERE token = ? AND purpose = 'personalization' AND granted = 0", [withdrawn])
                            == 1
                }
            ) {
                let r = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("shopper-2@example.com", granted: false))
                #expect(r.status == 201)
            }
            #expect(try !f.hasData("shopper-2@example.com"))
            try await Self.expectAcknowledgedOnlyAfterASyncThatCoversIt(
                f, "a revocation",
                committed: {
                    try count("SELECT count(*) FROM principals WHERE name = 'to-revoke' AND revoked_at IS NOT NULL") == 1
                }
            ) {
                let r = try await client.call(.delete, "/v1/principals/to-revoke", key: f.keys["admin"])
                #expect(r.status == 200)
            }
        }
        let linked = f.token("durable@example.com").rawValue
        try await Self.expectAcknowledgedOnlyAfterASyncThatCoversIt(
            f, "an identity link",
            committed: {
                try count("SELECT count(*) FROM match_keys WHERE token = ?", [linked]) == 1
            }
        ) {
            _ = try await f.service.subjects.link(
                "durable@example.com", namespace: "default", attributes: LinkAttributes(email: "d@example.com"), actor: "test")
        }
        // A second id with the same e-mail is linked to the first; undoing that link waits for its sync too.
        let second = f.token("durable-2@example.com").rawValue
        let link = try await f.service.subjects.link(
            "durable-2@example.com", namespace: "default", attributes: LinkAttributes(email: "d@example.com"), actor: "test")
        #expect(link?.canonical.rawValue == linked)
        #expect(try count("SELECT count(*) FROM identity_links WHERE token = ?", [second]) == 1)
        try await Self.expectAcknowledgedOnlyAfterASyncThatCoversIt(
            f, "an unlink",
            committed: {
                try count("SELECT count(*) FROM identity_links WHERE token = ?", [second]) == 0
            }
        ) {
            let existed = try await f.service.subjects.unlink("durable-2@example.com", namespace: "default", actor: "test")
            #expect(existed)
        }
    }
}
