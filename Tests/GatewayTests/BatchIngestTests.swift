import FeatureStore
import Foundation
import HTTPTypes
import HummingbirdTesting
import Policy
import Pseudonymization
import Storage
import Testing
@testable import Gateway
@testable import VeilCore

/// Batched ingest reads and writes set by set (docs/capacity.md: on PostgreSQL each statement is a round trip under the
/// one writer lock); runs on both backends (`VEIL_TEST_BACKEND`).
@Suite struct BatchIngestTests {
    /// A batch is read and written set by set (its people's tokens, their consent and its delivery keys in one read
    /// each, its rows in one insert each): what it stores must be what one event at a time stored. Repeats within the
    /// batch by id and by content, a linked person's two ids, a person without consent, a repeat's new id (not kept,
    /// so with new content it is a first delivery), and a GPC signal on the batch recorded once per person.
    @Test func aBatchStoresWhatEventsOneAtATimeWould() async throws {
        let f = try GatewayFixture()
        _ = try await f.service.subjects.link("b-old", namespace: "default", attributes: .init(email: "b@example.com"), actor: "test")
        _ = try await f.service.subjects.link("b-new", namespace: "default", attributes: .init(email: "b@example.com"), actor: "test")
        let canonical = try f.service.store.readBlocking { try f.service.linker.canonical(f.token("b-new"), in: $0) }
        #expect(canonical == f.token("b-old"), "b-new should be linked to b-old")
        /// Built where it is sent: a JSON value is not Sendable.
        @Sendable func batch() -> [[String: Any]] {
            [
                pageView("e1", "u1", "sku-1"),
                pageView("e1", "u1", "sku-9"),  // its id again
                pageView("e2", "u1", "sku-1"),  // its content under a new id
                pageView("e3", "u2", "sku-1"),  // no consent: counted anonymously, not kept
                pageView("e4", "b-new", "sku-2"),  // linked to b-old, who consented
                pageView("e5", "b-old", "sku-3"),
                pageView("e6", "u4", "sku-4"),
            ]
        }
        try await f.app.test(.router) { client in
            for s in ["u1", "b-old", "u4"] { _ = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(s)) }
            let first = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": batch()])
            #expect(
                first.json["accepted"] as? Int == 5 && first.json["duplicates"] as? Int == 2 && first.json["anonymized"] as? Int == 1,
                "\(first.body)")
            let again = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": batch()])
            #expect(again.json["accepted"] as? Int == 0 && again.json["duplicates"] as? Int == 7, "\(again.body)")
            let renewed = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [pageView("e2", "u1", "sku-5")]])
            #expect(renewed.json["accepted"] as? Int == 1, "\(renewed.body)")
            // Global Privacy Control on a batch naming u1 twice and u4 once, sent twice: one signal each.
            let gpc = ["events": [pageView("g1", "u1", "sku-6"), pageView("g2", "u1", "sku-7"), pageView("g3", "u4", "sku-6")]]
            for _ in 0..<2 {
                #expect(try await client.call(.post, "/v1/events", key: f.keys["app"], json: gpc, headers: ["Sec-GPC": "1"]).status == 200)
            }
            for s in ["u1", "u4"] {
                let history = try await client.call(.get, "/v1/consents/\(s)/history", key: f.keys["compliance-officer"])
                let methods = (history.json["events"] as? [[String: Any]] ?? []).compactMap { ($0["event"] as? [String: Any])?["method"] as? String }
                #expect(methods.filter { $0 == "gpc" }.count == 1, "\(s): \(methods)")
            }
        }
        #expect(try f.storedInteractions("u1") == 4, "e1, e2 with new content, g1, g2")
        #expect(try f.storedInteractions("u2") == 0)
        #expect(try !f.personalizationKeyExists("u2"), "no data key for a person without consent")
        #expect(try f.storedInteractions("b-old") == 2, "e4 and e5, under the linked person's token")
        #expect(try f.storedInteractions("u4") == 2, "e6, g3")
        let revealed = try f.service.store.readBlocking { db in
            try ["u1", "u2", "u4"].map { try f.service.identities.reveal(f.token($0), in: db) }
        }
        #expect(revealed == ["u1", nil, "u4"], "each consenting person's id is kept, sealed; nobody else's")
    }

    /// The same events sent as one batch to one gateway and one event per request to another store the same: per person
    /// the interactions (kind, item, time), the profile and the identity; the anonymous counts per item; the answers'
    /// sums. Page views, a profile, a search, purchases, repeats, two people with one event id, a person without
    /// consent and a linked person's two ids.
    @Test func oneBatchAndOneEventAtATimeStoreTheSame() async throws {
        @Sendable func events() -> [[String: Any]] {
            [
                pageView("p1", "v1", "sku-1"), pageView("p1", "v1", "sku-2"), pageView("p2", "v1", "sku-1"),
                profileEvent("f1", "v1", age: 34, location: "FR", device: "mobile"),
                [
                    "id": "s1", "kind": "search", "subject": "v2", "timestamp": "2026-11-20T10:00:00Z", "source": "web",
                    "query": "trail boots", "shown": ["sku-3"],
                ],
                purchase("o1", "v2", "sku-3"), purchase("o1", "v2", "sku-3"), pageView("p3", "v3", "sku-4"), pageView("p1", "v4", "sku-1"),
                pageView("p4", "v5-alias", "sku-5"), pageView("p5", "v5", "sku-6"), pageView("p6", "v5-alias", "sku-5"),
            ]
        }
        let subjects = ["v1", "v2", "v3", "v4", "v5", "v5-alias"]
        func stored(_ f: GatewayFixture) throws -> (people: [String], counts: [String]) {
            try f.service.store.readBlocking { db in
                let people = try subjects.map { subject -> String in
                    let token = try f.service.linker.canonical(f.token(subject), in: db)
                    let rows = try f.service.features.interactions(of: token, in: db).map { "\($0.kind.rawValue) \($0.item) \($0.time)" }
                    let profile = try f.service.features.profile(of: token, in: db) ?? [:]
                    let identity = try f.service.identities.reveal(token, in: db) ?? "-"
                    return "\(subject): \(rows.sorted()) \(profile.sorted { $0.key < $1.key }) \(identity)"
                }
                return (people, try db.anonymousTotals().map { "\($0.item) \($0.count)" }.sorted())
            }
        }
        var results: [(answers: [Int], stored: (people: [String], counts: [String]))] = []
        for oneAtATime in [false, true] {
            let f = try GatewayFixture()
            _ = try await f.service.subjects.link("v5", namespace: "default", attributes: .init(email: "v5@example.com"), actor: "test")
            _ = try await f.service.subjects.link("v5-alias", namespace: "default", attributes: .init(email: "v5@example.com"), actor: "test")
            let answers = try await f.app.test(.router) { client -> [Int] in
                for s in ["v1", "v2", "v4", "v5"] { _ = try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(s)) }
                var sums = [0, 0, 0]
                for batch in oneAtATime ? events().map { [$0] } : [events()] {
                    let r = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": batch])
                    #expect(r.status == 200, "\(r.body)")
                    for (i, field) in ["accepted", "duplicates", "anonymized"].enumerated() { sums[i] += r.json[field] as? Int ?? -100 }
                }
                return sums
            }
            results.append((answers, try stored(f)))
        }
        #expect(results[0].answers == results[1].answers && results[0].answers == [8, 4, 1], "\(results.map(\.answers))")
        #expect(results[0].stored.people == results[1].stored.people, "\(results[0].stored.people)\n\(results[1].stored.people)")
        #expect(results[0].stored.counts == results[1].stored.counts, "\(results[0].stored.counts)\n\(results[1].stored.counts)")
        #expect(results[0].stored.people.first?.contains("page_view sku-1") == true, "\(results[0].stored.people)")
    }

    /// Links are followed a hop at a time for all of a batch's people, and for one person alone: through chains to their
    /// end and around a cycle without looping.
    @Test func linksAreFollowedAsFarAsOneAtATime() async throws {
        let f = try GatewayFixture()
        let t = { (name: String) in f.token(name).rawValue }
        let links = [("a", "b"), ("b", "c"), ("c", "d"), ("x", "y"), ("y", "x"), ("m", "c")]
        try f.service.store.writeBlocking { db in
            for (from, to) in links {
                try db.setLink(StoredLink(token: t(from), canonical: t(to), rule: "email", score: 1, createdAt: 0, scope: "default"))
            }
        }
        let names = ["a", "b", "c", "d", "x", "y", "m", "lone"]
        let (together, alone) = try f.service.store.readBlocking { db in
            (
                try f.service.linker.canonical(names.map { f.token($0) }, in: db),
                try names.map { try f.service.linker.canonical(f.token($0), in: db) }
            )
        }
        // Each chain to its end; around the cycle, up to the token before the one it would come back to.
        let expected = ["d", "d", "d", "d", "y", "x", "d", "lone"].map { f.token($0) }
        #expect(names.map { together[f.token($0)] } == expected, "a chain of three hops, one of two, a cycle, a lone token")
        #expect(alone == expected, "one person at a time")
    }

    /// One item and day given twice to one statement is added up (a database server's upsert may not touch a row twice).
    @Test func anonymousCountsOfOneItemAndDayGivenTwiceAddUp() throws {
        let f = try GatewayFixture()
        try f.service.store.writeBlocking { db in try db.addAnonymousCounts([("twice-a", 5, 2), ("twice-a", 5, 3), ("twice-b", 5, 1)]) }
        let totals = try f.service.store.readBlocking { try $0.anonymousTotals() }.filter { $0.item.hasPrefix("twice-") }
        #expect(totals.map { "\($0.item) \($0.count)" }.sorted() == ["twice-a 5", "twice-b 1"], "\(totals)")
    }
}
