import Foundation
import Gateway
import Hummingbird
import HummingbirdTesting
import Persistence
import PostgresStorage
import Storage
import TestSupport
import Testing
@testable import VeilCore

/// Two gateways on one PostgreSQL database (`storage.gateways: several`), each with its own cache, principals, data
/// keys and served model: a change made through one is in force on the other's very next response.
@Suite struct SeveralGatewaysTests {
    /// Gateway A (which made the principals) and gateway B on A's database and keys, both watching the other's
    /// announcements.
    static func pair() async throws -> (a: GatewayFixture, b: GatewayFixture, watch: Task<Void, Never>) {
        let a = try GatewayFixture(backend: .postgres, sharedDatabase: true)
        // B's clock stands still: what it caches (principals for a second, lists for the TTL) never expires on its own,
        // so whatever B stops serving, an announcement made it stop.
        let b = try GatewayFixture(now: TestClock(Date()).now, backend: .postgres, sharing: a)
        let watch = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await a.service.clusterSync.run() }
                group.addTask { await b.service.clusterSync.run() }
            }
        }
        for _ in 0..<1000 where !(a.service.clusterSync.isCurrent && b.service.clusterSync.isCurrent) {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(a.service.clusterSync.isCurrent && b.service.clusterSync.isCurrent)
        return (a, b, watch)
    }

    static let shopper = "shopper-0@example.com", list = "/v1/recommendations/shopper-0%40example.com?k=5"

    @Test func aWithdrawalThroughOneGatewayEndsThePersonalizationTheOtherHasCached() async throws {
        let (a, b, watch) = try await Self.pair()
        defer { watch.cancel() }
        try await a.app.test(.router) { viaA in
            try await seedShop(viaA, a)
            _ = try b.service.training.train()
            try await b.app.test(.router) { viaB in
                let reader = a.keys["recommendation-client"]
                let first = try await viaB.call(.get, Self.list, key: reader)
                #expect(first.json["personalized"] as? Bool == true)
                _ = try await viaB.call(.get, Self.list, key: reader)
                #expect(try await CacheTests.hitsAndMisses(viaB) == (1, 1), "B answers the second request from its cache")

                let withdrawn = try await viaA.call(.post, "/v1/consents", key: a.keys["app"], json: consent(Self.shopper, granted: false))
                #expect(withdrawn.status == 201)
                // B's very next response, with no wait: A answered only once the announcement was on its way to B.
                let after = try await viaB.call(.get, Self.list, key: reader)
                #expect(after.status == 200)
                #expect(after.json["personalized"] as? Bool == false)
                #expect(try await CacheTests.hitsAndMisses(viaB) == (1, 2), "B must not answer from the list it cached before")
                // B's own model forgets the subject and will unlearn it, as A's does.
                let token = a.token(Self.shopper).rawValue
                #expect(b.service.unlearning.isPending(token))
                #expect(a.service.unlearning.isPending(token))
            }
        }
    }

    @Test func anErasureAndARevocationThroughOneGatewayHoldOnTheOther() async throws {
        let (a, b, watch) = try await Self.pair()
        defer { watch.cancel() }
        try await a.app.test(.router) { viaA in
            try await seedShop(viaA, a)
            _ = try b.service.training.train()
            try await b.app.test(.router) { viaB in
                let reader = a.keys["recommendation-client"]
                #expect(try await viaB.call(.get, Self.list, key: reader).json["personalized"] as? Bool == true)
                let erased = try await viaA.call(.post, "/v1/subjects/shopper-0%40example.com/erase", key: a.keys["compliance-officer"])
                #expect(erased.status == 200)
                let after = try await viaB.call(.get, Self.list, key: reader)
                #expect(after.json["personalized"] as? Bool == false)
                #expect(b.service.unlearning.isPending(a.token(Self.shopper).rawValue))

                // The reader's key was used on B and is cached there (B's clock does not move); revoked through A, B
                // refuses it at once.
                #expect(try await viaA.call(.delete, "/v1/principals/p-recommendation-client", key: a.keys["admin"]).status == 200)
                #expect(try await viaB.call(.get, "/v1/recommendations/shopper-1%40example.com?k=5", key: reader).status == 401)
                // A master key rotated through one gateway would leave the others unable to open re-wrapped keys.
                let rotate = try await viaB.call(.post, "/v1/keys/rotate", key: a.keys["admin"])
                #expect(rotate.status == 409)
                #expect((rotate.json["error"] as? [String: Any])?["code"] as? String == "rotation_needs_every_gateway")
            }
        }
    }

    /// While the watch is down nothing personal is served from memory; when it resumes after a gap, the gateway
    /// retrains (a missed announcement may have been a withdrawal its model must unlearn), and so it does when the watch
    /// first begins after a model was trained at start.
    @Test func aLostWatchFencesTheCacheAndAGapRetrains() async throws {
        let f = try GatewayFixture(backend: .postgres, sharedDatabase: true)
        try await f.app.test(.router) { client in
            try await seedShop(client, f)
            let reader = f.keys["recommendation-client"]
            _ = try await client.call(.get, Self.list, key: reader)
            _ = try await client.call(.get, Self.list, key: reader)
            #expect(try await CacheTests.hitsAndMisses(client) == (1, 1))

            let sync = f.service.clusterSync
            sync.apply(.lost)
            _ = try await client.call(.get, Self.list, key: reader)
            _ = try await client.call(.get, Self.list, key: reader)
            #expect(try await CacheTests.hitsAndMisses(client) == (1, 3), "a fenced cache answered or stored a list")

            for (round, why) in ["the watch began after the model was trained", "a gap"].enumerated() {
                let before = f.service.models.versions.stable
                if round == 1 { sync.apply(.lost) }
                sync.apply(.resync)
                for _ in 0..<1000 where f.service.models.versions.stable == before { try await Task.sleep(for: .milliseconds(10)) }
                #expect(f.service.models.versions.stable != before, "no retrain after \(why)")
            }
            _ = try await client.call(.get, Self.list, key: reader)
            _ = try await client.call(.get, Self.list, key: reader)
            #expect(try await CacheTests.hitsAndMisses(client).hits == 2, "the cache did not serve again once the watch resumed")
        }
    }
}
