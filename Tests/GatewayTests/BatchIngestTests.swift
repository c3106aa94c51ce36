import Foundation
import HTTPTypes
import HummingbirdTesting
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
        #expect(try f.storedInteractions("b-old") == 2, "e4 and e5, under the linked person's token")
        #expect(try f.storedInteractions("u4") == 2, "e6, g3")
        let revealed = try f.service.store.readBlocking { db in
            try ["u1", "u2", "u4"].map { try f.service.identities.reveal(f.token($0), in: db) }
        }
        #expect(revealed == ["u1", nil, "u4"], "each consenting person's id is kept, sealed; nobody else's")
    }
}
