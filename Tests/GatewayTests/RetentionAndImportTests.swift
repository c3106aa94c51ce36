import FeatureStore
import Foundation
import VeilCore
import Storage
import SQLiteStorage
import Gateway
import Hummingbird
import HummingbirdTesting
import Testing

@Suite struct RetentionAndImportTests {
    @Test func retentionDeletesOldBehaviourAndShredsLapsedConsents() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_800_000_000))
        let f = try GatewayFixture(now: { clock.now() })
        @Sendable func iso(_ d: Date) -> String { d.ISO8601Format() }
        try await f.app.test(.router) { client in
            _ = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("old@example.com"))
            var lapsing = consent("lapsing@example.com")
            lapsing["expires_at"] = iso(clock.now().addingTimeInterval(3600))
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: lapsing).status == 201)
            let old = iso(clock.now().addingTimeInterval(-200 * 86_400))
            let recent = iso(clock.now().addingTimeInterval(-10 * 86_400))
            let r = try await client.call(
                .post, "/v1/events", key: f.keys["app"],
                json: [
                    "events": [
                        pageView("o1", "old@example.com", "sku-1", at: old), pageView("o2", "old@example.com", "sku-2", at: recent),
                        pageView("l1", "lapsing@example.com", "sku-3", at: recent),
                    ]
                ])
            #expect(r.json["accepted"] as? Int == 3)
        }
        #expect(try f.storedInteractions("old@example.com") == 2)
        clock.advance(7200)
        let report = try await f.service.retention.run()
        #expect(report.interactionsDeleted == 1)
        #expect(report.lapsedConsentsShredded == 1)
        #expect(try f.storedInteractions("old@example.com") == 1)
        #expect(try f.hasData("lapsing@example.com") == false)
        let entries = try await f.app.test(.router) { client in
            try await client.call(.get, "/v1/audit?action=retention:run", key: f.keys["compliance-officer"]).json["entries"] as? [[String: Any]]
        }
        #expect(entries?.count == 1)
    }

    /// MovieLens 100K through the full privacy path. The data lives in ../shared beside the repository (CI always
    /// has it): a missing copy fails the test rather than skipping it, so that the import is never silently untested.
    @Test func movieLensImportKeepsEveryRatingUnderTokens() async throws {
        let dir = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/data/ml-100k").standardizedFileURL
        for name in ["u.data", "u.item", "u.user"] {
            let path = dir.appendingPathComponent(name).path
            try #require(FileManager.default.fileExists(atPath: path), "\(path) is missing: tests need ../shared beside the repository")
        }
        let f = try GatewayFixture()
        func read(_ name: String) throws -> String { String(decoding: try Data(contentsOf: dir.appendingPathComponent(name)), as: UTF8.self) }
        let report = try await f.service.movieLens.run(
            ratings: try read("u.data"), items: try read("u.item"), users: try read("u.user"), namespace: "ml")
        #expect(report.items == 1682)
        #expect(report.subjects == 943)
        #expect(report.ratings == 100_000)
        #expect(report.rejected == 0)
        let snapshot = try f.snapshot()
        #expect(snapshot.tokens.count == 943)
        #expect(snapshot.items.count == 1682)
        #expect(snapshot.interactions.count == 100_000)
        #expect(!snapshot.tokens.contains { $0.rawValue.contains("ml-user") })
    }
}
