import FeatureStore
import Foundation
import GRDB
import SQLiteStorage
import HTTPTypes
import Logging
import HummingbirdTesting
import Storage
import Synchronization
import Testing
@testable import Gateway
@testable import VeilCore
@testable import Vault

/// Issue #24: deliveries have a fingerprinter of their own (they were hashed with the subject-token key itself, over
/// an ambiguous "namespace|id"). Deliveries recorded the old way must still be recognized until retention removes them.
@Suite struct DeliveryKeysTests {
    @Test(sqliteOnly) func aRedeliveryOfAnEventRecordedUnderTheOldKeysIsStillADuplicate() async throws {
        // A fixed clock: the old record (18 November 2026) stays within retention however late this runs.
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_010))
        let f = try GatewayFixture(now: clock.now)
        let ring = f.service.ring
        let token = f.token("u-old").rawValue
        // As the previous version recorded event "old-1" of u-old: its id under the pseudonym key, "namespace|id".
        let legacy = Hash.keyed(Array("default|old-1".utf8), key: ring.pseudonymKey, length: 16).hexString
        try await f.service.sqlite.pool.write { db in
            try db.execute(sql: "INSERT INTO deliveries (token, key, at) VALUES (?, ?, ?)", arguments: [token, "i:" + legacy, 1_795_000_000])
        }
        #expect(f.service.deliveryKeys.legacy == false, "read at start, before the row existed")
        // A server started on this data reads that old records remain.
        var quiet = Logger(label: "veil-test")
        quiet.logLevel = .critical
        let restarted = try VeilService(
            paths: RuntimePaths(
                dataDirectory: f.root + "/data", keysDirectory: f.root + "/Keys",
                policiesDirectory: repositoryRoot.appendingPathComponent("Policies").path),
            passphrase: nil, logger: quiet, now: clock.now)
        #expect(restarted.deliveryKeys.legacy)
        f.service.deliveryKeys.legacy = true
        try await f.app.test(.router) { client in
            try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("u-old"))
            let again = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("old-1", "u-old", "sku-1")]])
            #expect(again.json["duplicates"] as? Int == 1 && again.json["accepted"] as? Int == 0, "\(again.body)")
            let fresh = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("new-1", "u-old", "sku-2")]])
            #expect(fresh.json["accepted"] as? Int == 1)
        }
        // New deliveries are recorded under the deliveries' own key, never under the token key.
        let keys = try await f.service.sqlite.pool.read { db in
            try String.fetchAll(db, sql: "SELECT key FROM deliveries WHERE token = ?", arguments: [token])
        }
        let expected = f.service.deliveryKeys.keys(namespace: "default", id: "new-1", content: "x").id
        #expect(keys.contains("d:" + expected))
        #expect(keys.filter { $0.hasPrefix("i:") } == ["i:" + legacy], "\(keys)")
        #expect(!keys.contains("i:" + Hash.keyed(Array("default|new-1".utf8), key: ring.pseudonymKey, length: 16).hexString))
        // Once retention has removed the old records, the old keys are no longer computed.
        _ = try await f.service.retention.sweep()
        #expect(f.service.deliveryKeys.legacy == true, "the old record is within retention")
        try await f.service.sqlite.pool.write { db in try db.execute(sql: "DELETE FROM deliveries WHERE key LIKE 'i:%'") }
        _ = try await f.service.retention.sweep()
        #expect(f.service.deliveryKeys.legacy == false)
        #expect(f.service.deliveryKeys.keys(namespace: "default", id: "x", content: "y").legacy == nil)
    }

    @Test func deliveryKeysKeepNamespacesAndKindsApart() throws {
        let f = try GatewayFixture()
        let a = f.service.deliveryKeys.keys(namespace: "a|b", id: "c", content: "z")
        let b = f.service.deliveryKeys.keys(namespace: "a", id: "b|c", content: "z")
        #expect(a.id != b.id, "the old \"namespace|id\" input made these one")
        #expect(
            f.service.deliveryKeys.keys(namespace: "n", id: "v", content: "v").id
                != f.service.deliveryKeys.keys(namespace: "n", id: "v", content: "v").content)
    }
}
