import Foundation
import Serving
import VeilCore
import Policy
import Gateway
import Hummingbird
import HummingbirdTesting
import Recommender
import Storage
import SQLiteStorage
import Testing

func profileEvent(_ id: String, _ subject: String, age: Int, location: String, device: String) -> [String: Any] {
    [
        "id": id, "kind": "profile", "subject": subject, "timestamp": "2026-11-20T09:00:00Z", "source": "app",
        "age": age, "location": location, "device": device,
    ]
}

func purchase(_ id: String, _ subject: String, _ item: String) -> [String: Any] {
    [
        "id": id, "kind": "purchase", "subject": subject, "timestamp": "2026-11-20T11:00:00Z", "source": "app", "order": "o-\(id)",
        "lines": [["item": item, "quantity": 1, "unit_price": 20.0, "currency": "EUR"]],
    ]
}

/// A catalog with two product types that carry specifications: shoes by Stride, headphones by Sonic.
func specifiedCatalog() -> [[String: Any]] {
    (0..<20).map { n -> [String: Any] in
        let shoe = n < 10
        return [
            "id": "sku-\(n)", "title": shoe ? "Runner \(n)" : "Headphones \(n)", "category": shoe ? "apparel/shoes" : "electronics/audio",
            "brand": shoe ? "Stride" : "Sonic", "available": true,
            "attributes": shoe ? ["color": n % 2 == 0 ? "red" : "black", "style": "runner"] : ["connection": n % 2 == 0 ? "bluetooth" : "wired"],
            "tags": [String](),
        ]
    }
}

@Suite struct ColdStartTests {
    /// 15 shoe shoppers in DE-BY aged 30-39 on phones, 15 headphone shoppers in FR aged 50-59 on desktops,
    /// 3 shoppers in IT (too few to form a segment).
    func seedSegments(_ client: some TestClientProtocol, _ f: GatewayFixture) async throws {
        #expect(try await client.call(.put, "/v1/items", key: f.keys["app"], json: ["items": specifiedCatalog()]).status == 200)
        var events: [[String: Any]] = []
        for s in 0..<33 {
            let subject = "seg-\(s)"
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(subject)).status == 201)
            let (age, location, device, base) =
                s >= 30 ? (70, "IT", "tablet", 10) : s % 2 == 0 ? (34, "DE-BY", "iPhone", 0) : (55, "FR", "Windows desktop", 10)
            events.append(profileEvent("p-\(s)", subject, age: age, location: location, device: device))
            for j in 0..<4 { events.append(pageView("v-\(s)-\(j)", subject, "sku-\(base + (s + j * 3) % 10)")) }
        }
        let r = try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": events])
        #expect(r.json["accepted"] as? Int == events.count)
        _ = try f.service.training.train()
    }

    func newcomer(
        _ client: some TestClientProtocol, _ f: GatewayFixture, _ subject: String, age: Int, location: String, device: String
    ) async throws
        -> (personalized: Bool?, reasons: Set<String>, items: [String], explanations: Set<String>)
    {
        #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(subject)).status == 201)
        let e = try await client.call(
            .post, "/v1/events", key: f.keys["app"],
            json: ["events": [profileEvent("p-\(subject)", subject, age: age, location: location, device: device)]])
        #expect(e.json["accepted"] as? Int == 1)
        let r = try await client.call(.get, "/v1/recommendations/\(subject)?k=5", key: f.keys["recommendation-client"])
        #expect(r.status == 200)
        let items = r.json["items"] as? [[String: Any]] ?? []
        #expect(items.count == 5)
        return (
            r.json["personalized"] as? Bool, Set(items.compactMap { $0["reason"] as? String }), items.compactMap { $0["item"] as? String },
            Set(items.compactMap { $0["explanation"] as? String })
        )
    }

    @Test func aNewSubjectGetsPopularityWithinTheirDemographicSegment() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedSegments(client, f)
            func shoes(_ ids: [String]) -> Int { ids.filter { Int($0.dropFirst(4))! < 10 }.count }
            // Same age band, region and device class as the shoe shoppers.
            let exact = try await newcomer(client, f, "new-de", age: 31, location: "DE-BY-Munich", device: "Android phone")
            #expect(exact.personalized == true)
            #expect(exact.reasons == ["popular-in-your-segment"])
            #expect(shoes(exact.items) == 5, "\(exact.items)")
            // Only the region matches the headphone shoppers.
            let region = try await newcomer(client, f, "new-fr", age: 22, location: "FR", device: "iPad")
            #expect(region.reasons == ["popular-in-your-region"])
            #expect(region.explanations == ["Popular in your region"])
            #expect(shoes(region.items) == 0, "\(region.items)")
            // Only the age band matches the shoe shoppers.
            let age = try await newcomer(client, f, "new-us", age: 29, location: "US", device: "Windows desktop")
            #expect(age.reasons == ["popular-in-your-age-group"])
            #expect(shoes(age.items) == 5)
            // The three IT shoppers are too few to be a segment (k = 5): anonymous popularity, not personalized.
            let small = try await newcomer(client, f, "new-it", age: 75, location: "IT", device: "tablet")
            #expect(small.personalized == false)
            #expect(small.reasons.isSubset(of: ["popular", "trending"]))
        }
    }

    @Test func aNewItemIsReachableThroughContentSimilarity() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            var catalog = specifiedCatalog()
            catalog.append([
                "id": "sku-new", "title": "Runner X", "category": "apparel/shoes", "brand": "Stride", "available": true,
                "attributes": ["color": "red", "style": "runner"], "tags": [String](),
            ])
            #expect(try await client.call(.put, "/v1/items", key: f.keys["app"], json: ["items": catalog]).status == 200)
            try await seedShop(client, f, catalogAlreadySent: true)
            let model = try #require(f.service.models.model)
            #expect(model.cold[Int(model.itemIndex["sku-new"]!)], "nobody interacted with the new item")
            // shopper-0 viewed red Stride runners: the new red Stride runner is recommended, as similar.
            let r = try await client.call(.get, "/v1/recommendations/shopper-0%40example.com?k=6", key: f.keys["recommendation-client"])
            let items = try #require(r.json["items"] as? [[String: Any]])
            let new = try #require(items.first { $0["item"] as? String == "sku-new" }, "\(items.map { $0["item"]! })")
            #expect(new["reason"] as? String == "similar-to")
            #expect((new["explanation"] as? String)?.hasPrefix("New, and similar to Runner") == true)
            // A headphone shopper does not get it.
            let other = try await client.call(.get, "/v1/recommendations/shopper-1%40example.com?k=5", key: f.keys["recommendation-client"])
            #expect(!((other.json["items"] as? [[String: Any]]) ?? []).contains { $0["item"] as? String == "sku-new" })
        }
    }

    /// Only the configured kinds are excluded: with `purchase` alone, a viewed item may come back, a bought one never.
    @Test func exclusionOfInteractedItemsIsConfiguredPerEventKind() async throws {
        var options = ServingOptions()
        options.excludeInteractedKinds = [.purchase]
        let f = try GatewayFixture(serving: options)
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            let r = try await client.call(
                .post, "/v1/events", key: f.keys["app"], json: ["events": [purchase("b1", "shopper-0@example.com", "sku-4")]])
            #expect(r.json["accepted"] as? Int == 1)
            let recs = try await client.call(.get, "/v1/recommendations/shopper-0%40example.com?k=20", key: f.keys["recommendation-client"])
            let ids = Set(((recs.json["items"] as? [[String: Any]]) ?? []).compactMap { $0["item"] as? String })
            #expect(!ids.contains("sku-4"), "bought")
            #expect(ids.contains("sku-0") && ids.contains("sku-3"), "viewed, allowed back: \(ids.sorted())")
            #expect(ids.count == 19)
        }
        // The default excludes every kind of interaction.
        let d = try GatewayFixture()
        try await d.app.test(.router) { client in
            try await seedShop(client, d)
            let recs = try await client.call(.get, "/v1/recommendations/shopper-0%40example.com?k=20", key: d.keys["recommendation-client"])
            let ids = Set(((recs.json["items"] as? [[String: Any]]) ?? []).compactMap { $0["item"] as? String })
            #expect(ids.isDisjoint(with: ["sku-0", "sku-3", "sku-6", "sku-9", "sku-2"]))
        }
    }
}

@Suite struct SearchTermTests {
    /// A subject who only searched gets items matching the words; the words themselves are never stored.
    @Test func searchWordsAreKeptAsHashedFeaturesAndMatchItemText() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            var catalog = specifiedCatalog()
            catalog.append(["id": "sku-trail", "title": "Mountain Trail Boot", "category": "apparel/shoes", "brand": "Stride", "available": true])
            #expect(try await client.call(.put, "/v1/items", key: f.keys["app"], json: ["items": catalog]).status == 200)
            try await seedShop(client, f, catalogAlreadySent: true)
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("searcher")).status == 201)
            let search: [String: Any] = [
                "id": "q1", "kind": "search", "subject": "searcher", "timestamp": "2026-11-20T10:00:00Z", "source": "web",
                "query": "Mountain TRAIL boots", "shown": ["sku-1"],
            ]
            #expect(try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": [search]]).json["accepted"] as? Int == 1)
            let r = try await client.call(.get, "/v1/recommendations/searcher?k=3", key: f.keys["recommendation-client"])
            #expect(r.json["personalized"] as? Bool == true)
            let items = try #require(r.json["items"] as? [[String: Any]])
            #expect(items.first?["item"] as? String == "sku-trail")
            #expect(items.first?["reason"] as? String == "matches-your-search")
            #expect(items.count == 3)
            let export = try await client.call(.get, "/v1/subjects/searcher/export", key: f.keys["compliance-officer"])
            #expect(export.status == 200)
            #expect(export.body.contains("search_terms"))
            #expect(!export.body.lowercased().contains("mountain") && !export.body.lowercased().contains("trail"))
        }
    }
}

@Suite struct ImputationTests {
    /// A subject who gave no age gets one inferred from behaviour; the export lists it as inferred, not as a fact.
    @Test func aMissingAgeBandIsImputedFromBehaviourAndNeverExportedAsFact() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await ColdStartTests().seedSegments(client, f)
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("no-age")).status == 201)
            var events: [[String: Any]] = [
                [
                    "id": "p-no-age", "kind": "profile", "subject": "no-age", "timestamp": "2026-11-20T09:00:00Z",
                    "source": "app", "location": "DE-BY", "device": "iPhone",
                ]
            ]
            for j in 0..<4 { events.append(pageView("na-\(j)", "no-age", "sku-\(j * 2)")) }
            #expect(try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": events]).json["accepted"] as? Int == 5)
            _ = try f.service.training.train()
            let export = try await client.call(.get, "/v1/subjects/no-age/export", key: f.keys["compliance-officer"])
            let profile = try #require(export.json["profile"] as? [String: String])
            #expect(profile["age_band"] == nil, "the subject never gave an age")
            let imputed = try #require(export.json["imputed"] as? [[String: Any]])
            #expect(imputed.count == 1)
            #expect(imputed.first?["field"] as? String == "age_band")
            #expect(imputed.first?["value"] as? String == "25-34", "like the shoe shoppers")
            #expect(imputed.first?["is_fact"] as? Bool == false)
            // Someone who gave an age has nothing imputed.
            let given = try await client.call(.get, "/v1/subjects/seg-0/export", key: f.keys["compliance-officer"])
            #expect((given.json["imputed"] as? [Any])?.isEmpty == true)
            #expect(f.service.models.model?.behaviourScaler.kind == .zScore)
            // Issue #22: a withdrawal takes the inference about the subject out of the served model before it returns.
            let token = f.token("no-age").rawValue
            #expect(f.service.models.model?.imputedAgeBands[token] != nil)
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("no-age", granted: false)).status == 201)
            #expect(f.service.models.model?.imputedAgeBands[token] == nil, "the served model still holds what it inferred about a withdrawn subject")
        }
    }
}
