import Consent
import FeatureStore
import Foundation
import Persistence
import PostgresStorage
import Pseudonymization
import Storage
import Synchronization
import TestSupport
import Testing

/// What the core relies on from the operational database, checked on every backend with the same tests: each
/// repository's reads see its writes, upserts add up, deletions report what they removed, a unit of work is atomic,
/// and concurrent writers never interleave.
@Suite struct RepositoryTests {
    func store(_ backend: TestBackend) throws -> any OperationalStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("veil-repo-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return try backend.makeStore(directory: dir)
    }

    static func event(_ seq: Int64, _ token: String, _ purpose: String = "personalization") -> StoredConsentEvent {
        StoredConsentEvent(sequence: seq, token: token, purpose: purpose, body: "{\"n\":\(seq)}", previousHash: "h\(seq - 1)", hash: "h\(seq)")
    }

    static func state(
        _ seq: Int64, _ token: String, _ purpose: String = "personalization", granted: Bool = true, expires: Int64? = nil
    )
        -> ConsentStateRow
    {
        ConsentStateRow(token: token, purpose: purpose, granted: granted, sequence: seq, expiresAt: expires, noticeVersion: "n1", purposeVersion: 2)
    }

    @Test(arguments: TestBackend.allCases) func theConsentLedgerReadsBackWhatItAppended(_ backend: TestBackend) async throws {
        let s = try store(backend)
        #expect(try await s.read { try $0.consentHead() } == nil)
        try await s.write { tx throws in
            try tx.appendConsentEvent(Self.event(1, "a"), state: Self.state(1, "a"))
            try tx.appendConsentEvent(Self.event(2, "b", "marketing"), state: Self.state(2, "b", "marketing", expires: 500))
            try tx.appendConsentEvent(Self.event(3, "a"), state: Self.state(3, "a", granted: false))
            try tx.appendConsentEvent(Self.event(4, "a", "marketing"), state: Self.state(4, "a", "marketing"))
        }
        try await s.read { tx throws in
            #expect(try tx.consentHead()! == (4, "h4"))
            #expect(try tx.consentState(token: "a", purpose: "personalization") == Self.state(3, "a", granted: false))
            #expect(try tx.consentState(token: "a", purpose: "nothing") == nil)
            #expect(try tx.grantedConsentPurposes(token: "a") == ["marketing"])
            #expect(try tx.consentEvents(token: "a").map(\.sequence) == [1, 3, 4])
            #expect(try tx.consentEvents(token: "a").first == Self.event(1, "a"))
            var seen: [Int64] = []
            try tx.forEachConsentEvent {
                seen.append($0.sequence); return $0.sequence < 2
            }
            #expect(seen == [1, 2], "the walk stops when asked")
            var states = 0
            try tx.forEachConsentState { _ in states += 1 }
            #expect(states == 3)
            #expect(try tx.lapsedConsents(atMillis: 499).isEmpty)
            #expect(try tx.lapsedConsents(atMillis: 500).map(\.token) == ["b"])
        }
        // A sequence number taken twice is refused, and the state written with it in the same unit is not kept.
        await #expect(throws: (any Error).self) {
            try await s.write { tx in try tx.appendConsentEvent(Self.event(4, "c"), state: Self.state(4, "c")) }
        }
        #expect(try await s.read { try $0.consentState(token: "c", purpose: "personalization") } == nil)
    }

    @Test(arguments: TestBackend.allCases) func subjectKeysAreStoredShreddedAndRewrapped(_ backend: TestBackend) async throws {
        let s = try store(backend)
        try await s.write { tx throws in
            #expect(!tx.isReadOnlyTransaction)
            try tx.insertSubjectKey(owner: "t1#personalization", version: 1, wrapped: [1, 2, 3, 0, 255], createdAt: 10)
            try tx.insertSubjectKey(owner: "t2#personalization", version: 1, wrapped: [4], createdAt: 10)
            try tx.insertSubjectKey(owner: "t3#identity", version: 2, wrapped: [5], createdAt: 10)
        }
        try await s.read { tx throws in
            #expect(tx.isReadOnlyTransaction)
            #expect(try tx.wrappedSubjectKey(owner: "t1#personalization") == [1, 2, 3, 0, 255])
            #expect(try tx.subjectKeyVersionCounts() == [1: 2, 2: 1])
            #expect(try Set(tx.subjectKeys(notUnder: 2, limit: 10).map(\.owner)) == ["t1#personalization", "t2#personalization"])
            #expect(try tx.subjectKeys(notUnder: 2, limit: 1).count == 1)
        }
        try await s.write { tx throws in
            try tx.replaceSubjectKey(owner: "t1#personalization", version: 2, wrapped: [9, 9])
            #expect(try tx.deleteSubjectKey(owner: "t2#personalization", shreddedAt: 20))
            #expect(try !tx.deleteSubjectKey(owner: "t2#personalization", shreddedAt: 21), "a second shredding finds no key")
        }
        try await s.read { tx throws in
            #expect(try tx.wrappedSubjectKey(owner: "t1#personalization") == [9, 9])
            #expect(try tx.wrappedSubjectKey(owner: "t2#personalization") == nil)
            #expect(try tx.subjectKeyVersionCounts() == [2: 2])
        }
        // Rollback hooks run when the unit of work fails, and only then.
        let ran = Atomic<Int>(0)
        try await s.write { tx in tx.onRollback { ran.add(1, ordering: .relaxed) } }
        #expect(ran.load(ordering: .relaxed) == 0)
        await #expect(throws: (any Error).self) {
            try await s.write { tx throws in
                tx.onRollback { ran.add(1, ordering: .relaxed) }
                try tx.insertSubjectKey(owner: "t4#personalization", version: 2, wrapped: [1], createdAt: 30)
                try tx.insertSubjectKey(owner: "t4#personalization", version: 2, wrapped: [1], createdAt: 30)
            }
        }
        #expect(ran.load(ordering: .relaxed) == 1)
        #expect(try await s.read { try $0.wrappedSubjectKey(owner: "t4#personalization") } == nil)
    }

    @Test(arguments: TestBackend.allCases) func identitiesLinksAndMatchKeys(_ backend: TestBackend) async throws {
        let s = try store(backend)
        try await s.write { tx throws in
            try tx.insertIdentity(token: "a", body: [7, 0, 7])
            try tx.setLink(StoredLink(token: "b", canonical: "a", rule: "email", score: 0.9, createdAt: 5, scope: "shop"))
            try tx.setLink(StoredLink(token: "c", canonical: "a", rule: "name", score: 0.5, createdAt: 6, scope: nil))
            try tx.setLink(StoredLink(token: "c", canonical: "a", rule: "phone", score: 0.7, createdAt: 7, scope: nil))
            try tx.addMatchKey(kind: "email", key: "k1", token: "a", nameGrams: nil)
            try tx.addMatchKey(kind: "email", key: "k1", token: "a", nameGrams: nil)
            try tx.addMatchKey(kind: "email", key: "k1", token: "b", nameGrams: "ab cd")
            try tx.addMatchKey(kind: "email", key: "k1", token: "b", nameGrams: "ef")
        }
        try await s.read { tx throws in
            #expect(try tx.identityExists(token: "a") && !tx.identityExists(token: "z"))
            #expect(try tx.identity(token: "a") == [7, 0, 7])
            #expect(try tx.link(of: "b") == StoredLink(token: "b", canonical: "a", rule: "email", score: 0.9, createdAt: 5, scope: "shop"))
            #expect(try tx.link(of: "c")?.rule == "phone", "setting a link replaces it")
            #expect(try Set(tx.linkedTokens(canonical: "a")) == ["b", "c"])
            #expect(try tx.unscopedLinkCount() == 1)
            let holders = try tx.matchKeyHolders(kind: "email", key: "k1", excluding: "c", limit: nil)
            #expect(holders.count == 2)
            #expect(holders.first { $0.token == "b" }?.nameGrams == "ef")
            #expect(try tx.matchKeyHolders(kind: "email", key: "k1", excluding: "a", limit: 5).map(\.token) == ["b"])
            #expect(try tx.matchKeyHolders(kind: "email", key: "k1", excluding: "z", limit: 1).count == 1)
        }
        try await s.write { tx throws in
            #expect(try tx.deleteUnscopedLinks() == 1)
            try tx.forgetMatchKeysAndLinks(token: "a")
            try tx.deleteIdentity(token: "a")
            #expect(try !tx.deleteLink(token: "b"), "links to the forgotten token went with it")
        }
        try await s.read { tx throws in
            #expect(try tx.identity(token: "a") == nil)
            #expect(try tx.matchKeyHolders(kind: "email", key: "k1", excluding: "z", limit: nil).map(\.token) == ["b"])
        }
    }

    @Test(arguments: TestBackend.allCases) func featuresCountsAndTheCatalog(_ backend: TestBackend) async throws {
        let s = try store(backend)
        try await s.write { tx throws in
            #expect(try tx.insertInteraction(id: "e1", token: "a", day: 10, body: [1]))
            #expect(try !tx.insertInteraction(id: "e1", token: "a", day: 10, body: [2]), "a duplicate id is not stored twice")
            #expect(try tx.insertInteraction(id: "e2", token: "a", day: 12, body: [2]))
            #expect(try tx.insertInteraction(id: "e3", token: "b", day: 9, body: [3]))
            try tx.setProfile(token: "a", body: [5])
            try tx.setProfile(token: "a", body: [6])
            try tx.addAnonymousCount(item: "x", day: 10, count: 3)
            try tx.addAnonymousCount(item: "x", day: 10, count: 2)
            try tx.addAnonymousCount(item: "x", day: 11, count: 1)
            try tx.subtractAnonymousCount(item: "x", day: 11, count: 4)
            try tx.setCatalogItem(id: "i2", body: "{\"id\":\"i2\"}", available: true, updatedAt: 1)
            try tx.setCatalogItem(id: "i1", body: "{\"id\":\"i1\"}", available: false, updatedAt: 1)
            try tx.setCatalogItem(id: "i1", body: "{\"id\":\"i1\",\"v\":2}", available: true, updatedAt: 2)
        }
        try await s.write { tx throws in
            #expect(try tx.markUncounted(token: "a", id: "e1"))
            #expect(try !tx.markUncounted(token: "a", id: "e1"), "a row is taken out of the counts once")
        }
        try await s.read { tx throws in
            #expect(try tx.interactionRows(token: "a", uncountedOnly: false).map(\.id).sorted() == ["e1", "e2"])
            #expect(try tx.interactionRows(token: "a", uncountedOnly: true).map(\.body) == [[2]])
            #expect(try tx.interactionTokens() == ["a", "b"])
            #expect(try tx.profile(token: "a") == [6])
            #expect(try tx.subjectHasRows(token: "a") && !tx.subjectHasRows(token: "z"))
            #expect(try tx.anonymousTotals().map { "\($0.item)=\($0.count)" } == ["x=5"], "a count never goes below zero, and zero rows go")
            #expect(try tx.anonymousCounts(sinceDay: 10).map { "\($0.item)/\($0.day)=\($0.count)" } == ["x/10=5"])
            #expect(try tx.catalogItemIDs() == ["i1", "i2"])
            #expect(try tx.catalogBodies() == ["{\"id\":\"i1\",\"v\":2}", "{\"id\":\"i2\"}"])
        }
        try await s.write { tx throws in
            #expect(try tx.deleteInteractions(beforeDay: 10) == 1)
            #expect(try tx.deleteSubjectRows(token: "a") == 3)
        }
        try await s.read { tx throws in
            #expect(try tx.interactionTokens().isEmpty)
            #expect(try !tx.subjectHasRows(token: "a"))
        }
    }

    @Test(arguments: TestBackend.allCases) func deliveriesQualityPrincipalsCountersAndBandits(_ backend: TestBackend) async throws {
        let s = try store(backend)
        var delta = SourceQualityLog.Delta()
        delta.events = 3
        delta.accepted = 2
        delta.rejected = 1
        delta.completenessSum = 1.5
        delta.lastEvent = 100
        let d = delta
        let key: [UInt8] = [0xde, 0xad, 0xbe, 0xef]
        try await s.write { tx throws in
            #expect(try tx.recordDelivery(token: "a", key: "v2k1", at: 10))
            #expect(try !tx.recordDelivery(token: "a", key: "v2k1", at: 11))
            #expect(try tx.recordDelivery(token: "a", key: "v2k2", at: 20))
            #expect(try tx.recordDelivery(token: "b", key: "k3", at: 30))
            try tx.addQuality(d, source: "web", day: 5)
            var older = d
            older.lastEvent = 50
            try tx.addQuality(older, source: "web", day: 6)
            try tx.addQuality(d, source: "app", day: nil)
            try tx.insertPrincipal(
                PrincipalRow(name: "shop", role: "app", namespace: "default", origins: "", keyHash: key, createdAt: 1, revokedAt: nil))
            try tx.addExperimentCount(experiment: "e", variant: "v", metric: "click", count: 2)
            try tx.addExperimentCount(experiment: "e", variant: "v", metric: "click", count: 3)
            try tx.saveBandit(campaign: "c", state: [1, 2], at: 1)
            try tx.saveBandit(campaign: "c", state: [3], at: 2)
        }
        try await s.read { tx throws in
            #expect(try tx.deliveryRecorded(token: "a", anyOf: ["zz", "v2k2"]))
            #expect(try !tx.deliveryRecorded(token: "b", anyOf: ["v2k2"]))
            #expect(try !tx.deliveryRecorded(token: "a", anyOf: []))
            #expect(try tx.deliveriesRecorded(withPrefixes: ["k3"]) && !tx.deliveriesRecorded(withPrefixes: ["zz"]))
            #expect(try tx.qualitySourceExists("web") && !tx.qualitySourceExists("mail"))
            #expect(try tx.qualitySourceCount() == 2)
            let web = try #require(try tx.qualityTotals().first { $0.source == "web" }?.totals)
            #expect(
                web.events == 6 && web.rejected == 2 && web.completenessSum == 3 && web.lastEvent == 100,
                "counters add up; the last event is the latest")
            #expect(try tx.qualityDays(since: 6).map { "\($0.source)/\($0.day)=\($0.events)" } == ["web/6=3"])
            #expect(try tx.principal(keyHash: key)?.name == "shop")
            #expect(try tx.principalExists(name: "shop"))
            #expect(try tx.experimentCounts(experiment: "e").map { "\($0.variant)/\($0.metric)=\($0.count)" } == ["v/click=5"])
            #expect(try tx.savedBandits() == ["c": [3]])
        }
        try await s.write { tx throws in
            try tx.deleteDelivery(token: "a", key: "v2k1")
            #expect(try tx.deleteDeliveries(before: 25) == 1)
            try tx.deleteDeliveries(token: "b")
            #expect(try tx.revokePrincipal(name: "shop", at: 9) == 1)
            #expect(try tx.revokePrincipal(name: "shop", at: 10) == 0, "a principal is revoked once")
        }
        try await s.read { tx throws in
            #expect(try !tx.deliveryRecorded(token: "a", anyOf: ["v2k1", "v2k2"]))
            #expect(try tx.activePrincipal(name: "shop") == nil)
            #expect(try tx.principals().first?.revokedAt == 9)
        }
    }

    /// The published model: parts stored before it is published, one version published at a time, every other
    /// version (an older model, or parts a crashed trainer left) deleted when one is, and named so its key can go too.
    @Test(arguments: TestBackend.allCases) func oneModelIsPublishedAndTheOthersAreDeleted(_ backend: TestBackend) async throws {
        let s = try store(backend)
        #expect(try await s.read { try $0.publishedModel() } == nil)
        try await s.write { tx throws in
            try tx.insertModelPart(version: "m-1", index: 0, bytes: [1, 2])
            try tx.insertModelPart(version: "m-1", index: 1, bytes: [3])
            try tx.insertModelPart(version: "m-orphan", index: 0, bytes: [9])
        }
        #expect(try await s.read { try $0.publishedModel() } == nil, "parts alone publish nothing")
        let first = PublishedModel(version: "m-1", trainedAt: 100, generation: 7, parts: 2)
        #expect(try await s.write { try $0.publishModel(first, replacing: "m-0") } == nil, "published over a version that is not there")
        #expect(try await s.write { try $0.publishModel(first, replacing: nil) } == ["m-orphan"])
        #expect(try await s.read { try $0.modelPart(version: "m-orphan", index: 0) } == [9], "parts go after the publish, not in it")
        #expect(try await s.write { try $0.deleteModelParts(of: "m-orphan", limit: 4) } == 1)
        try await s.read { tx throws in
            #expect(try tx.publishedModel() == first)
            #expect(try tx.modelPart(version: "m-1", index: 1) == [3])
            #expect(try tx.modelPart(version: "m-orphan", index: 0) == nil)
        }
        try await s.write { tx throws in try tx.insertModelPart(version: "m-2", index: 0, bytes: [4]) }
        let second = PublishedModel(version: "m-2", trainedAt: 200, generation: 9, parts: 1)
        #expect(
            try await s.write { try $0.publishModel(second, replacing: nil) } == nil, "a trainer that missed m-1 overwrote it with its own")
        #expect(try await s.read { try $0.publishedModel() } == first)
        #expect(try await s.write { try $0.publishModel(second, replacing: "m-1") } == ["m-1"])
        #expect(try await s.write { try $0.deleteModelParts(of: "m-1", limit: 1) } == 1)
        #expect(try await s.write { try $0.deleteModelParts(of: "m-1", limit: 1) } == 1)
        #expect(try await s.write { try $0.deleteModelParts(of: "m-1", limit: 1) } == 0)
        #expect(try await s.read { try $0.modelPart(version: "m-2", index: 0) } == [4], "the published version's parts were deleted")
        try await s.read { tx throws in
            #expect(try tx.publishedModel() == second)
            #expect(try tx.modelPart(version: "m-1", index: 0) == nil, "a replaced model's parts are gone")
            #expect(try tx.modelPart(version: "m-2", index: 0) == [4])
        }
    }

    /// One process trains at a time: on PostgreSQL across every gateway of the database, and released when the trainer
    /// finishes.
    @Test func onlyOneGatewayTrainsAtATime() async throws {
        let settings = try TestBackend.freshDatabase()
        let a = try PostgresStore(settings: settings), b = try PostgresStore(settings: settings)
        let entered = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        // Every wait on a thread of its own: a test that blocks the cooperative pool starves the suites beside it.
        let trainer = Task {
            try await Self.onThread {
                try a.asSoleTrainer(patience: 5) { () -> Int in
                    entered.signal()
                    release.wait()
                    return 1
                }
            }
        }
        try await Self.onThread { entered.wait() }
        #expect(try await Self.onThread { try b.asSoleTrainer(patience: 0.5) { 2 } } == nil, "a second gateway trained while the first did")
        release.signal()
        #expect(try await trainer.value == 1)
        #expect(try await Self.onThread { try b.asSoleTrainer(patience: 5) { 3 } } == 3, "the lock outlived the training that held it")
    }

    static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { done in DispatchQueue.global().async { done.resume(with: Result { try body() }) } }
    }

    /// Writers never interleave: each reads the ledger's head and appends after it, as consent does; concurrent
    /// writers on any backend (and, on PostgreSQL, on any gateway) must all land, none on a sequence number taken.
    @Test(arguments: TestBackend.allCases) func concurrentWritersAppendOneAfterAnother(_ backend: TestBackend) async throws {
        let s = try store(backend)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<24 {
                group.addTask {
                    try await s.write { tx throws in
                        let next = (try tx.consentHead()?.sequence ?? 0) + 1
                        try tx.appendConsentEvent(Self.event(next, "t\(i)"), state: Self.state(next, "t\(i)"))
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await s.read { try $0.consentHead()?.sequence } == 24)
    }
}
