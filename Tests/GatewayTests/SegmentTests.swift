import Foundation
import Policy
import Hummingbird
import HummingbirdTesting
import Recommender
import Storage
import SQLiteStorage
import Testing
@testable import Gateway
@testable import VeilCore
@testable import Serving

/// 20 shoes: sku-0…4 on clearance (cheap), sku-5…9 mid-priced, sku-10…19 premium (sku-10 and 11 new arrivals).
func tieredCatalog() -> [[String: Any]] {
    (0..<20).map { n in
        [
            "id": "sku-\(n)", "title": "Shoe \(n)", "category": "apparel/shoes", "price": n < 5 ? 10.0 : n < 10 ? 60.0 : 200.0,
            "tags": n < 5 ? ["clearance"] : n < 10 || n > 11 ? [String]() : ["new"],
        ]
    }
}

/// 16 bargain hunters buy from the clearance rack, 16 premium buyers from the top shelf; everyone browses the middle.
func seedTiers(_ client: some TestClientProtocol, _ f: GatewayFixture) async throws {
    #expect(try await client.call(.put, "/v1/items", key: f.keys["app"], json: ["items": tieredCatalog()]).status == 200)
    var events: [[String: Any]] = []
    for s in 0..<32 {
        let subject = "tier-\(s)"
        #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent(subject)).status == 201)
        let shelf = s % 2 == 0 ? 0 : 10
        let width = s % 2 == 0 ? 5 : 10
        for j in 0..<3 { events.append(purchase("b-\(s)-\(j)", subject, "sku-\(shelf + (s + j) % width)")) }
        events.append(pageView("v-\(s)", subject, "sku-\(5 + s % 5)"))
    }
    #expect(try await client.call(.post, "/v1/events", key: f.keys["app"], json: ["events": events]).json["accepted"] as? Int == events.count)
    _ = try f.service.training.train()
}

@Suite struct SegmentTests {
    @Test func behaviourSegmentsAreFoundAndNamed() async throws {
        let f = try GatewayFixture()
        try await f.app.test(.router) { client in
            try await seedTiers(client, f)
            let model = try #require(try await f.service.training.segmentReport(view: .behaviour, method: .kmeans, k: nil, actor: "test"))
            let names = Set(model.segments.map(\.name))
            #expect(names.contains("bargain hunters") && names.contains("premium buyers"), "\(model.segments)")
            let bargain = try #require(model.segments.first { $0.name == "bargain hunters" })
            #expect(bargain.size == 16)
            // Every even subject is in the bargain segment.
            for s in stride(from: 0, to: 32, by: 2) { #expect(model.assignments[f.token("tier-\(s)").rawValue] == bargain.id) }
            let ward = try #require(try await f.service.training.segmentReport(view: .both, method: .ward, k: 2, actor: "test"))
            #expect(ward.segments.map(\.size).sorted() == [16, 16])
            // Analysing segments reads everyone's data: it is on the audit record.
            let entries = try await client.call(.get, "/v1/audit?action=segments:analyse", key: f.keys["compliance-officer"])
            #expect((entries.json["entries"] as? [Any])?.count == 2)
        }
    }

    /// A new-arrivals strategy for bargain hunters brings the (premium, unbought) new arrivals to the top of their lists.
    @Test func aSegmentStrategyLiftsTheItemsItFavours() async throws {
        func newArrivalRanks(_ strategies: [String: SegmentStrategy]) async throws -> [Int] {
            var options = ServingOptions()
            options.segmentStrategies = strategies
            options.excludeInteractedKinds = [.purchase]
            let f = try GatewayFixture(serving: options)
            return try await f.app.test(.router) { client in
                try await seedTiers(client, f)
                let r = try await client.call(.get, "/v1/recommendations/tier-0?k=17", key: f.keys["recommendation-client"])
                let ids = ((r.json["items"] as? [[String: Any]]) ?? []).compactMap { $0["item"] as? String }
                return ids.enumerated().filter { ["sku-10", "sku-11"].contains($0.element) }.map(\.offset)
            }
        }
        let plain = try await newArrivalRanks([:])
        let lifted = try await newArrivalRanks(["bargain hunters": .newArrivals, "premium buyers": .premium])
        #expect(lifted.count == 2 && plain.count == 2)
        #expect(lifted.max()! < plain.min()!, "strategy on: \(lifted), off: \(plain)")
    }
}
