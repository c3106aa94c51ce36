import Audit
import FeatureStore
import Foundation
import Serving
import VeilCore
import GRDB
import SQLiteStorage
import Gateway
import Hummingbird
import HummingbirdTesting
import Logging
import Storage
import Synchronization
import TestSupport
import Testing
@testable import Vault

/// A small shop: 30 consenting subjects in two taste groups, 20 items.
func seedShop(_ client: some TestClientProtocol, _ f: GatewayFixture, subjects: Int = 30, catalogAlreadySent: Bool = false) async throws {
    if !catalogAlreadySent {
        let items = (0..<20).map {
            [
                "id": "sku-\($0)", "title": "Item \($0)", "category": $0 < 10 ? "apparel/shoes" : "electronics/audio",
                "available": true, "attributes": [String: String](), "tags": [String](),
            ] as [String: Any]
        }
        #expect(try await client.call(.put, "/v1/items", key: f.keys["app"], json: ["items": items]).status == 200)
    }
    var events: [[String: Any]] = []
    for s in 0..<subjects {
        #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("shopper-\(s)@example.com")).status == 201)
        let base = s % 2 == 0 ? 0 : 10
        for j in 0..<5 { events.append(pageView("e-\(s)-\(j)", "shopper-\(s)@example.com", "sku-\(base + (s + j * 3) % 10)")) }
    }
    let r = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": events])
    #expect(r.status == 200)
    #expect(r.json["accepted"] as? Int == events.count)
    _ = try f.service.training.train()
}

@Suite struct PrivacyFlowTests {
    @Test func consentedSubjectGetsExplainedPersonalizedRecommendations() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            let r = try await client.call(.get, "/v1/recommendations/shopper-0%40example.com?k=5", key: f.keys["recommendation-client"])
            #expect(r.status == 200)
            #expect(r.json["personalized"] as? Bool == true)
            let items = try #require(r.json["items"] as? [[String: Any]])
            #expect(items.count == 5)
            let ids = items.compactMap { $0["item"] as? String }
            // Taste group of shopper-0 is sku-0…9; already viewed items are never recommended.
            #expect(ids.filter { Int($0.dropFirst(4))! < 10 }.count >= 4, "\(ids)")
            let viewed = Set((0..<5).map { "sku-\((0 + $0 * 3) % 10)" })
            #expect(viewed.isDisjoint(with: ids))
            for item in items {
                #expect((item["reason"] as? String)?.isEmpty == false)
                #expect((item["explanation"] as? String)?.isEmpty == false)
            }
            #expect(r.json["model_version"] as? String == f.service.models.model?.version)
        }
    }

    @Test func subjectWithoutConsentNeverReachesTheFeatureStore() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            let r = try await client.call(
                .post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("x1", "stranger@example.com", "sku-1")]])
            #expect(r.json["accepted"] as? Int == 1)
            #expect(r.json["anonymized"] as? Int == 1)
            #expect(try f.hasData("stranger@example.com") == false)
            let recs = try await client.call(.get, "/v1/recommendations/stranger%40example.com?k=3", key: f.keys["recommendation-client"])
            #expect(recs.json["personalized"] as? Bool == false)
            #expect((recs.json["items"] as? [[String: Any]])?.allSatisfy { ["popular", "trending"].contains($0["reason"] as? String) } == true)
        }
    }

    @Test func withdrawalIsEffectiveBeforeItsCallReturns() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            let uri = "/v1/recommendations/shopper-2%40example.com?k=3"
            #expect(try await client.call(.get, uri, key: f.keys["recommendation-client"]).json["personalized"] as? Bool == true)
            let token = f.token("shopper-2@example.com")
            #expect(f.service.cache.contains(token: token.rawValue))
            let w = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("shopper-2@example.com", granted: false))
            #expect(w.status == 201)
            // Right after the call: cache dropped, rows gone, key shredded, next answer non-personalized.
            #expect(!f.service.cache.contains(token: token.rawValue))
            #expect(try f.hasData("shopper-2@example.com") == false)
            #expect(try f.personalizationKeyExists("shopper-2@example.com") == false)
            #expect(try await client.call(.get, uri, key: f.keys["recommendation-client"]).json["personalized"] as? Bool == false)
            // A later grant starts from nothing.
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("shopper-2@example.com")).status == 201)
            #expect(try await client.call(.get, uri, key: f.keys["recommendation-client"]).json["personalized"] as? Bool == false)
        }
    }

    @Test func gpcHeaderWithdrawsMarketingAndFlagsTheConflict() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("ca@example.com", "marketing")).status == 201)
            let r = try await client.call(
                .post, "/v1/consents", key: f.keys["app"], json: ["subject": "ca@example.com", "notice_version": "2026-01", "jurisdiction": "us_ca"],
                headers: ["Sec-GPC": "1"])
            #expect(r.status == 201)
            #expect(r.json["gpc_conflict"] as? Bool == true)
            #expect(r.json["granted"] as? Bool == false)
            let state = try await client.call(.get, "/v1/consents/ca%40example.com", key: f.keys["app"])
            #expect(((state.json["purposes"] as? [String: Any])?["marketing"] as? [String: Any])?["allowed"] as? Bool == false)
            let history = try await client.call(.get, "/v1/consents/ca%40example.com/history", key: f.keys["compliance-officer"])
            let events = try #require(history.json["events"] as? [[String: Any]])
            #expect(events.count == 2)
        }
    }

    @Test func unknownNoticeVersionIsRefusedWith422() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            var body = consent("u@example.com")
            body["notice_version"] = "1999-12"
            let r = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: body)
            #expect(r.status == 422)
            #expect((r.json["error"] as? [String: Any])?["message"] as? String == "unknown notice version '1999-12'; known: 2026-01")
        }
    }

    @Test(sqliteOnly) func aLongReadDefersEmptyingTheWALAndAnErasureSaysSoUntilItIsDone() async throws {
        let capture = LogCapture()
        let f = try GatewayFixture(logger: capture.logger)
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            // A read transaction held open on another thread, as a long export or training read would.
            let reader = HeldReader(f.service.sqlite.pool, table: "sqlite_master")
            let withdrawal = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("shopper-3@example.com", granted: false))
            #expect(withdrawal.status == 201, "the withdrawal is recorded and its data shredded; only the WAL waits")
            let warnings = capture.messages.withLock { $0.filter { $0.0 == .warning }.map(\.1) }
            #expect(warnings.contains { $0.hasPrefix("a reader keeps old pages in the WAL after consent withdrawal") })
            let erasure = try await client.call(.post, "/v1/subjects/shopper-4%40example.com/erase", key: f.keys["compliance-officer"])
            #expect(erasure.status == 503)
            #expect((erasure.json["error"] as? [String: Any])?["code"] as? String == "erasure_incomplete")
            #expect(erasure.headers[.retryAfter] == "1")
            #expect(f.service.sqlite.walScrubPending)
            reader.end()
            // Up to 120 s: the retrier runs on the cooperative pool, which a parallel run on two cores can keep busy.
            for _ in 0..<4_800 where f.service.sqlite.walScrubPending { try await Task.sleep(for: .milliseconds(25)) }
            #expect(!f.service.sqlite.walScrubPending)
            let walBytes = (try FileManager.default.attributesOfItem(atPath: f.service.sqlite.path + "-wal")[.size] as? NSNumber)?.intValue
            #expect(walBytes == 0)
            // The erasure had happened; repeating the request confirms it.
            let again = try await client.call(.post, "/v1/subjects/shopper-4%40example.com/erase", key: f.keys["compliance-officer"])
            #expect(again.status == 200)
            let export = try await client.call(.get, "/v1/subjects/shopper-4%40example.com/export", key: f.keys["compliance-officer"])
            #expect(export.json["has_data"] as? Bool == false)
        }
    }

    /// The attack of issue #21, item 1: back up the data file as an operator would (`VACUUM INTO`), erase a subject,
    /// start a second instance on the copy with the same `Keys/`, and ask it for the subject's data.
    @Test(sqliteOnly) func anErasureReachesABackupOfTheDataTakenBeforeIt() async throws {
        let f = try GatewayFixture()
        let backupDirectory = f.root + "/restored"
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            try FileManager.default.createDirectory(atPath: backupDirectory, withIntermediateDirectories: true)
            try f.vacuumInto(backupDirectory + "/veil.sqlite")
            let r = try await client.call(.post, "/v1/subjects/shopper-4%40example.com/erase", key: f.keys["compliance-officer"])
            #expect(r.status == 200)
            #expect((r.json["rows_deleted"] as? Int ?? 0) >= 5)
            let export = try await client.call(.get, "/v1/subjects/shopper-4%40example.com/export", key: f.keys["compliance-officer"])
            #expect(export.json["has_data"] as? Bool == false)
            let verify = try await client.call(.get, "/v1/audit/verify", key: f.keys["compliance-officer"])
            #expect(verify.json["firstBadSequence"] == nil && (verify.json["entries"] as? Int ?? 0) > 30)
            // The signatures reach to within one checkpoint interval (50 in the fixture) of the head.
            let entries = verify.json["entries"] as? Int ?? 0, signed = verify.json["signedThrough"] as? Int ?? -1
            #expect(signed >= 0 && signed <= entries && entries - signed < 50)
            // And the answer says what it cannot prove: a log checked against itself alone.
            #expect((verify.json["proves"] as? String)?.hasPrefix("internal consistency only") == true)
        }
        // The restored copy still holds shopper-4's ciphertext rows; with the key store as it now is, none opens.
        let restored = try VeilService(
            paths: RuntimePaths(
                dataDirectory: backupDirectory, keysDirectory: f.root + "/Keys",
                policiesDirectory: f.service.paths.policiesDirectory), passphrase: nil)
        let shopper4 = f.token("shopper-4@example.com")
        #expect(
            try await restored.sqlite.pool.read {
                try Int.fetchOne($0, sql: "SELECT count(*) FROM interactions WHERE token = ?", arguments: [shopper4.rawValue])
            } == 5)
        try await Application(router: GatewayRouter.build(service: restored)).test(.router) { client in
            let gone = try await client.call(.get, "/v1/subjects/shopper-4%40example.com/export", key: f.keys["compliance-officer"])
            #expect(gone.status == 200)
            #expect(gone.json["has_data"] as? Bool == false)
            #expect((gone.json["interactions"] as? [Any])?.isEmpty == true)
            let kept = try await client.call(.get, "/v1/subjects/shopper-5%40example.com/export", key: f.keys["compliance-officer"])
            #expect(kept.json["has_data"] as? Bool == true)
            #expect((kept.json["interactions"] as? [Any])?.count == 5)
        }
    }

    @Test func exportCanBeSealedToTheRequestersKey() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 2)
            let recipient = SealedBox.KeyPair.generate()
            let r = try await client.call(
                .get, "/v1/subjects/shopper-1%40example.com/export?recipient=\(recipient.publicKey.hexString)", key: f.keys["compliance-officer"])
            #expect(r.status == 200)
            let sealed = try #require(Data(base64Encoded: r.json["sealed"] as? String ?? ""))
            let plain = try SealedBox.open(Array(sealed), with: recipient)
            let export = try #require(try JSONSerialization.jsonObject(with: Data(plain)) as? [String: Any])
            #expect((export["interactions"] as? [Any])?.count == 5)
            #expect(!String(decoding: plain, as: UTF8.self).contains("shopper-1@example.com"))
        }
    }

    @Test func namespacesKeepTenantsApart() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("same-id")).status == 201)
            let other = try await client.call(.get, "/v1/consents/same-id", key: f.otherNamespaceAppKey)
            #expect(((other.json["purposes"] as? [String: Any])?["personalization"] as? [String: Any])?["allowed"] as? Bool == false)
        }
    }

    @Test func noRawIdentifierOrKeyInAnyDatabaseFileOrAuditExport() async throws {
        let f = try GatewayFixture()
        let exported = try await f.app.test(.router) { client in
            try await seedShop(client, f, subjects: 12)
            let profile: [String: Any] = [
                "id": "p1", "kind": "profile", "subject": "shopper-3@example.com", "timestamp": "2026-11-20T10:00:00Z",
                "source": "app", "age": 37, "location": "DE-BY-Munich", "email": "shopper-3@example.com", "ip": "203.0.113.9",
            ]
            #expect(try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [profile]]).status == 200)
            _ = try await client.call(.get, "/v1/recommendations/shopper-3%40example.com", key: f.keys["recommendation-client"])
            _ = try await client.call(.get, "/v1/audit?subject=shopper-3%40example.com", key: f.keys["compliance-officer"])
            return try await client.call(.get, "/v1/audit/export", key: f.keys["compliance-officer"]).body
        }
        var needles = (0..<12).map { "shopper-\($0)@example.com" } + ["203.0.113.9", "Munich"]
        needles += f.keys.values.map { $0 }
        let ring = f.service.ring
        for key in [ring.pseudonymKey, ring.currentMasterKey] { needles.append(key.withUnsafeBytes { Array($0).hexString }) }
        let files = try FileManager.default.subpathsOfDirectory(atPath: f.root + "/data").map { f.root + "/data/" + $0 }
        #expect(files.contains { $0.hasSuffix("audit.sqlite") })
        #expect(TestBackend.current != .sqlite || files.contains { $0.hasSuffix("veil.sqlite") })
        var haystacks = try files.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
        haystacks.append(Data(exported.utf8))
        // On PostgreSQL, everything the database holds, as a dump an operator (or a thief of a backup) has it.
        if TestBackend.current == .postgres { haystacks.append(try f.postgresDump()) }
        for needle in needles {
            for form in [Data(needle.utf8), Data(needle.utf8).base64EncodedData()] {
                for hay in haystacks { #expect(hay.range(of: form) == nil, "found \(needle.prefix(12))…") }
            }
        }
        let rawKeys = [ring.pseudonymKey, ring.currentMasterKey].map { k in k.withUnsafeBytes { Data($0) } }
        for key in rawKeys { for hay in haystacks { #expect(hay.range(of: key) == nil, "raw key bytes found") } }
    }
}
