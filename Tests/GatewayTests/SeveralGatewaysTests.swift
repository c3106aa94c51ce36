import Foundation
import Gateway
import Hummingbird
import HummingbirdTesting
import Persistence
import PostgresStorage
import Serving
import Storage
import TestSupport
import Vault
import Synchronization
import Testing
@testable import VeilCore

/// Two gateways on one PostgreSQL database (`storage.gateways: several`), each with its own cache, principals, data
/// keys and served model: a change made through one is in force on the other's very next response.
// One test at a time: each runs two gateways with their listeners, and six at once on two cores delay a listener far
// more than any deployment should (the "very next response" checks measure that delay).
@Suite(.serialized) struct SeveralGatewaysTests {
    /// Gateway A (which made the principals) and gateway B on A's database and keys, both watching the other's
    /// announcements.
    static func pair(
        clock: TestClock = TestClock(Date()), bHeadInterval: Int64 = 50
    ) async throws -> (a: GatewayFixture, b: GatewayFixture, watch: Task<Void, Never>) {
        let a = try GatewayFixture(backend: .postgres, sharedDatabase: true, auditLogName: "gw-a")
        // B's clock stands still: what it caches (principals for a second, lists for the TTL) never expires on its own,
        // so whatever B stops serving, an announcement made it stop.
        let b = try GatewayFixture(now: clock.now, backend: .postgres, sharing: a, auditLogName: "gw-b", auditHeadInterval: bHeadInterval)
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

    /// Waits (at most 10 s) until `f` serves `version`.
    static func serves(_ f: GatewayFixture, _ version: String?) async throws -> Bool {
        for _ in 0..<1000 where f.service.models.versions.stable != version { try await Task.sleep(for: .milliseconds(10)) }
        return f.service.models.versions.stable == version
    }

    /// One gateway trains and publishes its model in the database; the other loads it (it trains nothing: a loaded
    /// model carries no training data) and its answers name that version. A withdrawal through the loading gateway is
    /// unlearned by the one that trained, which publishes the new version; the other serves it within seconds, and the
    /// version that held the subject is gone from the database with its key.
    @Test func oneGatewayTrainsAndEveryGatewayServesItsModel() async throws {
        let (a, b, watch) = try await Self.pair()
        defer { watch.cancel() }
        try await a.app.test(.router) { viaA in
            try await seedShop(viaA, a)
            let trained = try #require(a.service.models.model)
            #expect(trained.training != nil)
            #expect(try await Self.serves(b, trained.version), "B does not serve the model A published")
            #expect(b.service.models.model?.training == nil, "B trained a model of its own")
            #expect(b.service.models.model?.provenance?.digest == trained.provenance?.digest)
            // As a copy of the database shows it: the model's parts hold its per-row tokens and catalog only sealed.
            let token = Array(a.token(Self.shopper).rawValue.utf8), item = Array("sku-1".utf8)
            try await a.service.store.read { tx throws in
                let published = try #require(try tx.publishedModel())
                for index in 0..<published.parts {
                    let part = try #require(try tx.modelPart(version: published.version, index: index))
                    #expect(!contains(part, token) && !contains(part, item), "part \(index) of the stored model is readable")
                }
            }
            try await b.app.test(.router) { viaB in
                let reader = a.keys["recommendation-client"]
                let list = try await viaB.call(.get, Self.list, key: reader)
                #expect(list.json["personalized"] as? Bool == true)
                #expect(list.json["model_version"] as? String == trained.version)
                let fromA = try await viaA.call(.get, Self.list, key: reader)
                #expect(
                    (list.json["items"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
                        == (fromA.json["items"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, "the two gateways rank differently")

                #expect(try await viaB.call(.post, "/v1/consents", key: a.keys["app"], json: consent(Self.shopper, granted: false)).status == 201)
                let token = a.token(Self.shopper).rawValue
                #expect(b.service.unlearning.isPending(token))
                // A hears of it through its watch (B answered once its own watch had it).
                for _ in 0..<1000 where !a.service.unlearning.isPending(token) { try await Task.sleep(for: .milliseconds(10)) }
                #expect(a.service.unlearning.isPending(token))
                // B holds no training data: it leaves the unlearning to A for half the delay (its clock stands still).
                #expect(try b.service.training.unlearnLocked() == nil)
                #expect(b.service.models.versions.stable == trained.version)

                let unlearned = try #require(try a.service.training.unlearnLocked())
                #expect(unlearned.method == .unlearned, "A has the training data to unlearn in place")
                #expect(try await Self.serves(b, unlearned.model.version), "B does not serve the unlearned model")
                // Settled right after the swap the line above waited for.
                for _ in 0..<1000 where b.service.unlearning.isPending(token) { try await Task.sleep(for: .milliseconds(10)) }
                #expect(!b.service.unlearning.isPending(token), "B still waits to unlearn a subject its model no longer holds")
                let provenance = try #require(b.service.models.model?.provenance)
                #expect(!provenance.contains(token, fingerprinter: b.service.training.provenanceFingerprinter))
                #expect(try await viaB.call(.get, Self.list, key: reader).json["model_version"] as? String == unlearned.model.version)

                // In the database: only the new version, and no key left for the one that held the subject.
                try await a.service.store.read { tx throws in
                    #expect(try tx.publishedModel()?.version == unlearned.model.version)
                    #expect(try tx.modelPart(version: trained.version, index: 0) == nil)
                    #expect(try tx.wrappedSubjectKey(owner: DataKeyOwner(token: trained.version, use: .model).rawValue) == nil)
                    #expect(try tx.wrappedSubjectKey(owner: DataKeyOwner(token: unlearned.model.version, use: .model).rawValue) != nil)
                }
            }
        }
    }

    /// When the gateway that trained does not unlearn a subject within half the delay (down, or busy), another one
    /// does: a full retrain without the subject, published, and served by the first.
    @Test func anotherGatewayUnlearnsWhenTheTrainerDoesNotWithinHalfTheDelay() async throws {
        let clock = TestClock(Date())
        let (a, b, watch) = try await Self.pair(clock: clock)
        defer { watch.cancel() }
        try await a.app.test(.router) { viaA in
            try await seedShop(viaA, a)
            let trained = try #require(a.service.models.versions.stable)
            #expect(try await Self.serves(b, trained))
            #expect(try await viaA.call(.post, "/v1/consents", key: a.keys["app"], json: consent(Self.shopper, granted: false)).status == 201)
            let token = a.token(Self.shopper).rawValue
            for _ in 0..<1000 where !b.service.unlearning.isPending(token) { try await Task.sleep(for: .milliseconds(10)) }
            #expect(try b.service.training.unlearnLocked() == nil, "B did not leave the unlearning to A first")
            clock.advance(b.service.training.unlearnWithin / 2 + 1)
            let done = try #require(try b.service.training.unlearnLocked())
            #expect(done.method == .retrained, "B has no training data to unlearn in place")
            #expect(!b.service.unlearning.isPending(token))
            #expect(try await Self.serves(a, done.model.version), "A does not serve the model B published")
            for _ in 0..<1000 where a.service.unlearning.isPending(token) { try await Task.sleep(for: .milliseconds(10)) }
            #expect(!a.service.unlearning.isPending(token), "A still waits to unlearn a subject its model no longer holds")
        }
    }

    /// A published model that cannot be loaded (damaged, or written by another format version) stops no training: the
    /// next one trains over it and publishes in its place.
    @Test func anUnreadablePublishedModelIsTrainedOver() async throws {
        let f = try GatewayFixture(backend: .postgres, sharedDatabase: true)
        try await f.app.test(.router) { client in try await seedShop(client, f) }
        let first = try #require(f.service.models.versions.stable)
        try await f.service.store.write { tx throws in
            try tx.insertModelPart(version: "m-damaged", index: 0, bytes: [1, 2, 3])
            _ = try tx.publishModel(PublishedModel(version: "m-damaged", trainedAt: 0, generation: .max, parts: 0), replacing: first)
        }
        let model = try f.service.training.train()
        #expect(model.version != first)
        try await f.service.store.read { tx throws in
            #expect(try tx.publishedModel()?.version == model.version)
            #expect(try tx.modelPart(version: "m-damaged", index: 0) == nil)
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
                // A change announced after the model's snapshot, which the watch could have missed.
                #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("late-\(round)@example.com")).status == 201)
                let before = f.service.models.versions.stable
                if round == 1 { sync.apply(.lost) }
                sync.apply(.resync)
                for _ in 0..<1000 where f.service.models.versions.stable == before { try await Task.sleep(for: .milliseconds(10)) }
                #expect(f.service.models.versions.stable != before, "no retrain after \(why)")
            }
            // A gap after which the published model saw every announcement needs no retrain: the retrain that follows
            // the gap finds it fresh and reads no snapshot.
            let snapshots = Mutex(0)
            f.service.hooks.onTrainingSnapshotRead { snapshots.withLock { $0 += 1 } }
            let current = f.service.models.versions.stable
            sync.apply(.lost)
            sync.apply(.resync)
            _ = try await f.service.training.trainOffThePool(unlessPublished: .sawEveryAnnouncement)
            #expect(snapshots.withLock { $0 } == 0, "retrained although the published model had seen everything")
            #expect(f.service.models.versions.stable == current)
            #expect(try await client.call(.post, "/v1/consents", key: f.keys["app"], json: consent("later@example.com")).status == 201)
            _ = try await f.service.training.trainOffThePool(unlessPublished: .sawEveryAnnouncement)
            #expect(snapshots.withLock { $0 } >= 1, "served a model that had not seen a later announcement")
            _ = try await client.call(.get, Self.list, key: reader)
            _ = try await client.call(.get, Self.list, key: reader)
            #expect(try await CacheTests.hitsAndMisses(client).hits == 2, "the cache did not serve again once the watch resumed")
        }
    }
}

/// Whether `needle` occurs in `haystack`.
private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    return (0...(haystack.count - needle.count)).contains { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
}
