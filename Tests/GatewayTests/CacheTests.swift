import Foundation
import Serving
import VeilCore
import Gateway
import Hummingbird
import HummingbirdTesting
import Testing

/// The recommendation cache as a client sees it: a repeated request is answered from the cache (and counted as
/// a hit on /metrics), and the list is computed afresh after a new event of that subject, a model swap or the TTL.
@Suite struct CacheTests {
    static func hitsAndMisses(_ client: some TestClientProtocol) async throws -> (hits: Double, misses: Double) {
        let metrics = try await client.call(.get, "/metrics", key: nil).body
        return (
            metricSample("veil_recommendation_cache_hits_total", in: metrics) ?? 0,
            metricSample("veil_recommendation_cache_misses_total", in: metrics) ?? 0
        )
    }

    @Test func aNewEventOfTheSubjectDropsItsListAndOnlyItsList() async throws {
        // A TTL no starved run outlasts (the clock is the real one): a list may leave the cache only when dropped.
        let f = try GatewayFixture(cacheTTL: 3600)
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            let key = f.keys["recommendation-client"]
            let mine = "/v1/recommendations/shopper-0%40example.com?k=5", theirs = "/v1/recommendations/shopper-1%40example.com?k=5"
            let first = try await client.call(.get, mine, key: key)
            _ = try await client.call(.get, theirs, key: key)
            #expect(try await Self.hitsAndMisses(client) == (0, 2))
            let again = try await client.call(.get, mine, key: key)
            #expect(try await Self.hitsAndMisses(client) == (1, 2))
            #expect(again.json["items"] as? [[String: AnyHashable]] == first.json["items"] as? [[String: AnyHashable]])
            #expect(again.json["request_id"] as? String != first.json["request_id"] as? String)

            // shopper-0 buys the item at the top of its list: the next list is computed again and leaves it out.
            let top = try #require((first.json["items"] as? [[String: Any]])?.first?["item"] as? String)
            let bought = try await client.call(
                .post, "/v1/events", key: f.keys["app"], json: ["events": [purchase("buy-1", "shopper-0@example.com", top)]])
            #expect(bought.json["accepted"] as? Int == 1)
            let after = try await client.call(.get, mine, key: key)
            #expect(try await Self.hitsAndMisses(client) == (1, 3))
            #expect(!((after.json["items"] as? [[String: Any]]) ?? []).contains { $0["item"] as? String == top })
            // The other subject's list was not touched.
            _ = try await client.call(.get, theirs, key: key)
            #expect(try await Self.hitsAndMisses(client) == (2, 3))
        }
    }

    @Test func aModelSwapAndTheTTLEndACachedList() async throws {
        let clock = TestClock(Date(timeIntervalSince1970: 1_795_400_000))
        let f = try GatewayFixture(cacheTTL: 30, now: clock.now)
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            let key = f.keys["recommendation-client"], uri = "/v1/recommendations/shopper-3%40example.com?k=4"
            _ = try await client.call(.get, uri, key: key)
            _ = try await client.call(.get, uri, key: key)
            #expect(try await Self.hitsAndMisses(client) == (1, 1))
            // Another k is another list.
            _ = try await client.call(.get, "/v1/recommendations/shopper-3%40example.com?k=3", key: key)
            #expect(try await Self.hitsAndMisses(client) == (1, 2))

            clock.advance(10)
            let retrained = try f.service.training.train()
            let fresh = try await client.call(.get, uri, key: key)
            #expect(fresh.json["model_version"] as? String == retrained.version)
            #expect(try await Self.hitsAndMisses(client) == (1, 3))

            clock.advance(29)
            _ = try await client.call(.get, uri, key: key)
            #expect(try await Self.hitsAndMisses(client) == (2, 3))
            clock.advance(2)  // 31 s after the list was computed
            _ = try await client.call(.get, uri, key: key)
            #expect(try await Self.hitsAndMisses(client) == (2, 4))
        }
    }

    @Test func withoutATTLNothingIsCached() async throws {
        let f = try GatewayFixture(cacheTTL: 0)
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            for _ in 0..<3 {
                _ = try await client.call(.get, "/v1/recommendations/shopper-4%40example.com?k=4", key: f.keys["recommendation-client"])
            }
            #expect(try await Self.hitsAndMisses(client) == (0, 3))
        }
    }
}
