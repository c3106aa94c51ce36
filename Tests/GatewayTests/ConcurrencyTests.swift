import Dispatch
import Foundation
import VeilCore
import GRDB
import SQLiteStorage
import Synchronization
import Gateway
import Hummingbird
import HummingbirdTesting
import Policy
import Pseudonymization
import Storage
import Testing

@Suite struct ConcurrencyTests {
    /// Many withdrawals, consent reads, recommendations and unknown keys at once never stall the server. Every database
    /// access on a request's path is asynchronous now: a synchronous read on one of the few cooperative threads could
    /// wait for a reader held by an asynchronous read that itself waited for a cooperative thread (a review hung a
    /// release server with 16 concurrent withdrawals, SIGTERM included). In process the old code did not hang in three
    /// runs of this test, so it guards the path rather than reproducing that hang. A watchdog thread outside the
    /// cooperative pool fails the run rather than letting it hang.
    @Test func concurrentWithdrawalsAndReadsNeverStall() async throws {
        let f = try GatewayFixture()
        let finished = Atomic<Bool>(false)
        DispatchQueue.global().asyncAfter(deadline: .now() + 120) {
            if !finished.load(ordering: .acquiring) { fatalError("requests stalled: a cooperative thread is blocked on the database") }
        }
        defer { finished.store(true, ordering: .releasing) }
        try await f.app.test(.ahc(.http)) { client in
            try await seedShop(client, f, subjects: 40)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for n in 0..<64 {
                    group.addTask {
                        let s = "shopper-\(n % 40)@example.com"
                        switch n % 4 {
                        case 0: return try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(s, granted: false)).status
                        case 1: return try await client.call(.get, "/v1/consents/shopper-\(n % 40)%40example.com", key: f.keys["app"]).status
                        case 2:
                            return try await client.call(
                                .get, "/v1/recommendations/shopper-\(n % 40)%40example.com?k=5", key: f.keys["recommendation-client"]
                            ).status
                        default: return try await client.call(.get, "/v1/consents/x", key: "vk_" + String(repeating: "0", count: 64)).status
                        }
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.count == 64)
            #expect(statuses.allSatisfy { [200, 201, 401].contains($0) }, "\(statuses)")
        }
    }

    /// 8 clients write consents and events for the same subjects at once: afterwards the current state equals the
    /// last ledger event per subject and purpose, and no acknowledged write is lost.
    @Test func eightConcurrentClientsLoseNothing() async throws {
        let f = try GatewayFixture()
        let subjects = (0..<6).map { "shared-\($0)@example.com" }
        try await f.app.test(.ahc(.http)) { client in
            for s in subjects {
                #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(s)).status == 201)
            }
            let acknowledged = try await withThrowingTaskGroup(of: (consents: Int, events: [String]).self) { group in
                for c in 0..<8 {
                    group.addTask {
                        var consents = 0
                        var events: [String] = []
                        for n in 0..<15 {
                            let s = subjects[(c + n) % subjects.count]
                            if n % 3 == 0 {
                                let r = try await client.call(
                                    .post, "/v1/consents", key: f.keys["app"], json: consent(s, "marketing", granted: (c + n) % 2 == 0))
                                if r.status == 201 { consents += 1 }
                            } else {
                                let id = "c\(c)-n\(n)"
                                let at = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: 1_790_000_000 + Double(c * 1000 + n * 20)))
                                let r = try await client.call(
                                    .post, "/v1/events", key: f.keys["app"], json: ["events": [pageView(id, s, "sku-\(n)", at: at)]])
                                if r.status == 200, r.json["accepted"] as? Int == 1 { events.append(s) }
                            }
                        }
                        return (consents, events)
                    }
                }
                return try await group.reduce(into: (consents: 0, events: [String]())) {
                    $0.consents += $1.consents; $0.events += $1.events
                }
            }
            #expect(acknowledged.consents == 8 * 5)
            #expect(acknowledged.events.count == 8 * 10)
            var marketingEvents = 0
            for s in subjects {
                let history = try await client.call(.get, "/v1/consents/\(s.replacingOccurrences(of: "@", with: "%40"))/history", key: f.keys["app"])
                let events = try #require(history.json["events"] as? [[String: Any]])
                let marketing = events.filter { ($0["event"] as? [String: Any])?["purpose"] as? String == "marketing" }
                marketingEvents += marketing.count
                let last = (marketing.max { ($0["sequence"] as! Int) < ($1["sequence"] as! Int) }?["event"] as? [String: Any])?["granted"] as? Bool
                let state = try await client.call(.get, "/v1/consents/\(s.replacingOccurrences(of: "@", with: "%40"))", key: f.keys["app"])
                let allowed = ((state.json["purposes"] as? [String: Any])?["marketing"] as? [String: Any])?["allowed"] as? Bool
                #expect(allowed == last, "state of \(s) differs from its last ledger event")
            }
            #expect(marketingEvents == acknowledged.consents)
            for s in Set(acknowledged.events) {
                #expect(try f.storedInteractions(s) == acknowledged.events.filter { $0 == s }.count)
            }
            let verify = try await client.call(.get, "/v1/audit/verify", key: f.keys["compliance-officer"])
            #expect(verify.json["firstBadSequence"] == nil)
        }
    }
}

/// Holds a database's write lock from a connection of its own, as another process would.
final class WriteLockHolder: Sendable {
    private let queue: DatabaseQueue
    private let held = Mutex(true)

    init(path: String) throws {
        var configuration = Configuration()
        configuration.allowsUnsafeTransactions = true  // the point: a transaction left open between accesses
        queue = try DatabaseQueue(path: path, configuration: configuration)
        try queue.writeWithoutTransaction { try $0.execute(sql: "BEGIN IMMEDIATE") }
    }

    var isHeld: Bool { held.withLock { $0 } }

    func release() {
        held.withLock { held in
            guard held else { return }
            try? queue.writeWithoutTransaction { try $0.execute(sql: "COMMIT") }
            held = false
        }
    }
}

/// Writes that wait for the database must not hold the threads every other request needs.
@Suite struct WaitingWritesTests {
    @Test func writesWaitingForTheDatabaseDoNotHoldUpReads() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            let recs = "/v1/recommendations/shopper-0%40example.com?k=3"
            #expect(try await client.call(.get, recs, key: f.keys["recommendation-client"]).status == 200)

            // Another process holds the operational database's write lock; a timer outside Swift's thread pool lets
            // go after 9 s in any case (under the 10 s busy timeout the waiting writers have), so a failure shows as an
            // ordering, not a hang.
            let lock = try WriteLockHolder(path: f.service.paths.operationalDatabase)
            DispatchQueue.global().asyncAfter(deadline: .now() + 9) { lock.release() }

            // More waiting writes (event batches and consent changes) than the pool has threads.
            let writers = ProcessInfo.processInfo.activeProcessorCount + 2
            try await withThrowingTaskGroup(of: Int.self) { group in
                for n in 0..<writers {
                    group.addTask {
                        n % 2 == 0
                            ? try await client.call(
                                .post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("w-\(n)", "shopper-1@example.com", "sku-3")]]
                            ).status
                            : try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("shopper-\(n)@example.com", "marketing"))
                                .status
                    }
                }
                try await Task.sleep(for: .milliseconds(300))
                // A cached list and a read of the ledger are answered while every write still waits for the lock.
                #expect(try await client.call(.get, recs, key: f.keys["recommendation-client"]).status == 200)
                #expect(try await client.call(.get, "/v1/consents/shopper-0%40example.com", key: f.keys["app"]).status == 200)
                #expect(lock.isHeld, "the reads were answered only after the lock was let go")
                lock.release()
                for try await status in group { #expect(status == 200 || status == 201) }
            }
        }
    }
}

@Suite struct IdentityLinkageFlowTests {
    /// A link made before links were scoped (here: forged into the table as such a link would look, joining a
    /// subject of tenant A to one of tenant B) must not carry a new link of tenant A across; the operator can find and
    /// remove such links.
    @Test(sqliteOnly) func aNewLinkNeverInheritsALinkMadeBeforeLinksWereScoped() async throws {
        let f = try GatewayFixture()
        let a = f.service.tokenizer.token(for: "a-old", namespace: "default"), b = f.service.tokenizer.token(for: "b-other", namespace: "tenant-b")
        _ = try await f.service.subjects.link("a-old", namespace: "default", attributes: .init(email: "old@example.com"), actor: "test")
        try await f.service.sqlite.pool.write { db in
            try db.execute(
                sql: "INSERT INTO identity_links (token, canonical, rule, score, created_at, scope) VALUES (?, ?, 'email', 1, 0, NULL)",
                arguments: [a.rawValue, b.rawValue])
        }
        let link = try await f.service.subjects.link("a-new", namespace: "default", attributes: .init(email: "old@example.com"), actor: "test")
        #expect(link?.canonical == a, "the new link followed a legacy link into another tenant: \(String(describing: link))")
        #expect(try await f.service.subjects.legacyLinks(undo: false, actor: "test") == 1)
        #expect(try await f.service.subjects.legacyLinks(undo: true, actor: "test") == 1)
        #expect(try await f.service.subjects.legacyLinks(undo: false, actor: "test") == 0)
    }

    /// Issue #21, item 3, as it was found: two tenants link their own subjects with the same e-mail (or the same name
    /// and postcode). Tenant B's recommendation client must not get A's subject's personalized list, and B's app must
    /// not read A's consent state.
    @Test(arguments: [LinkAttributes(email: "jane@example.com"), LinkAttributes(name: "Jane Doe", postcode: "10115")])
    func linksNeverCrossTenantsThatDoNotShareIdentities(_ attributes: LinkAttributes) async throws {
        let f = try GatewayFixture()
        let roles = Set(f.service.policy.roles.keys)
        let bClient = try f.service.principals.add(name: "b-recs", role: "recommendation-client", namespace: "tenant-b", knownRoles: roles)
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 6)
            _ = try await f.service.subjects.link("shopper-0@example.com", namespace: "default", attributes: attributes, actor: "test")
            let link = try await f.service.subjects.link("b-user", namespace: "tenant-b", attributes: attributes, actor: "test")
            #expect(link == nil)
            let theirs = try await client.call(.get, "/v1/recommendations/b-user", key: bClient)
            #expect(theirs.status == 200)
            #expect(theirs.json["personalized"] as? Bool == false)
            let state = try await client.call(.get, "/v1/consents/b-user", key: f.otherNamespaceAppKey)
            #expect(((state.json["purposes"] as? [String: Any])?["personalization"] as? [String: Any])?["allowed"] as? Bool == false)
        }
    }

    /// Two sources of one shop, declared as sharing identities in `Policies/identities.yaml`.
    @Test func linkedSourcesShareOneHistoryUntilUnlinked() async throws {
        let f = try GatewayFixture(sharedIdentities: ["default", "tenant-b"])
        try await f.app.test(.router) { client in
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("app-42")).status == 201)
            _ = try await f.service.subjects.link("app-42", namespace: "default", attributes: .init(email: "Alice@example.com"), actor: "test")
            let link = try await f.service.subjects.link(
                "crm-9", namespace: "tenant-b", attributes: .init(email: "alice@example.com "), actor: "test")
            #expect(link?.rule == "email")
            // The CRM source (another namespace) writes under the person's canonical token.
            let r = try await client.call(.post, "/v1/events", key: f.otherNamespaceAppKey, json: ["events": [pageView("crm-e1", "crm-9", "sku-7")]])
            #expect(r.json["anonymized"] as? Int == 0)
            #expect(try f.storedInteractions("app-42") == 1)
            #expect(try await f.service.subjects.unlink("crm-9", namespace: "tenant-b", actor: "test"))
            let after = try await client.call(
                .post, "/v1/events", key: f.otherNamespaceAppKey, json: ["events": [pageView("crm-e2", "crm-9", "sku-8")]])
            #expect(after.json["anonymized"] as? Int == 1)
            #expect(try f.storedInteractions("app-42") == 1)
            let audit = try await client.call(.get, "/v1/audit?action=identity:link", key: f.keys["compliance-officer"])
            #expect((audit.json["entries"] as? [Any])?.count == 2)
            #expect(!audit.body.contains("alice"))
        }
    }
}

@Suite struct LinkedIdsAndTheCacheTests {
    /// Two ids of one person share a token, so they share a cached list; each caller must still see only the
    /// id it asked about, and an unlink must take effect at once, not when the cached link expires.
    @Test func linkedIdsShareACachedListButEachSeesOnlyItsOwnId() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 6)
            _ = try await f.service.subjects.link(
                "shopper-0@example.com", namespace: "default", attributes: .init(email: "s0@example.com"), actor: "test")
            #expect(
                try await f.service.subjects.link("loyalty-0", namespace: "default", attributes: .init(email: "S0@example.com"), actor: "test") != nil
            )
            let recs = f.keys["recommendation-client"]
            let first = try await client.call(.get, "/v1/recommendations/shopper-0%40example.com?k=4", key: recs)
            #expect(first.json["personalized"] as? Bool == true)
            let second = try await client.call(.get, "/v1/recommendations/loyalty-0?k=4", key: recs)
            #expect(second.json["personalized"] as? Bool == true)
            #expect(second.json["subject"] as? String == "loyalty-0")
            #expect(!second.body.contains("shopper-0"))
            #expect(second.json["request_id"] as? String != first.json["request_id"] as? String)
            func items(_ json: [String: Any]) -> [String] { (json["items"] as? [[String: Any]])?.compactMap { $0["item"] as? String } ?? [] }
            #expect(!items(first.json).isEmpty)
            #expect(items(second.json) == items(first.json))
            #expect(try await f.service.subjects.unlink("loyalty-0", namespace: "default", actor: "test"))
            // loyalty-0 never consented on its own: unlinked, it gets the non-personalized list right away.
            let after = try await client.call(.get, "/v1/recommendations/loyalty-0?k=4", key: recs)
            #expect(after.json["personalized"] as? Bool == false)
            #expect(!after.body.contains("shopper-0"))
            // The audit log tells a list computed for the request from one the cache answered.
            let audit = try await client.call(.get, "/v1/audit?action=recommendations:read&limit=1000", key: f.keys["compliance-officer"])
            let reasons = (audit.json["entries"] as? [[String: Any]])?.compactMap { ($0["record"] as? [String: Any])?["reason"] as? String } ?? []
            #expect(reasons.contains("status 200: personalized"))
            #expect(reasons.contains("status 200: personalized (cached)"))
            #expect(reasons.contains { $0.hasPrefix("status 200: non-personalized") })
        }
    }
}

@Suite struct RotationUnderLoadTests {
    @Test func rotatingTheMasterKeyWhileServingFailsNoRequestAndEveryRowStillReads() async throws {
        let f = try GatewayFixture(cacheTTL: 0)
        try await f.app.test(.ahc(.http)) { client in
            try await seedShop(client, f, subjects: 30)
            let failures = try await withThrowingTaskGroup(of: Int.self) { group in
                for c in 0..<4 {
                    group.addTask {
                        var bad = 0
                        for n in 0..<40 {
                            let s = "shopper-\((c * 7 + n) % 30)%40example.com"
                            let r = try await client.call(.get, "/v1/recommendations/\(s)?k=5", key: f.keys["recommendation-client"])
                            if r.status != 200 || r.json["personalized"] as? Bool != true { bad += 1 }
                        }
                        return bad
                    }
                }
                group.addTask {
                    let r = try await client.call(.post, "/v1/keys/rotate", key: f.keys["admin"])
                    return r.status == 200 && r.json["master_version"] as? Int == 2 ? 0 : 1000
                }
                return try await group.reduce(0, +)
            }
            #expect(failures == 0)
            for s in 0..<30 {
                #expect(try f.storedInteractions("shopper-\(s)@example.com") == 5)
            }
        }
        #expect(try f.keyVersionCounts() == [2: 60])
    }

}
