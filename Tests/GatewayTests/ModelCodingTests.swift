import FeatureStore
import Foundation
import Ingestion
import Policy
import Storage
import Testing
import Vault
@testable import Recommender
@testable import Serving

/// A model trained on a generated shop, as the gateway trains one, with the shop's histories to rank for.
struct CodingFixture: Sendable {
    let snapshot: TrainingSnapshot
    /// Per token of `snapshot`, its stored history.
    let histories: [[StoredInteraction]]
    let model: ServingModel
    let fingerprinter: Fingerprinter
    let now: Date

    /// Enough subjects for the hybrid, behaviour segments and imputed age bands (a third give no age). Its blend weights
    /// are fixed, none zero, so that every component type and the recency weighting are in the bytes (a search may
    /// leave some at zero).
    static let shop = CodingFixture(
        users: 90, seed: 11,
        fixing: ServingModel.Hyperparameters(blendWeights: [1, 0.5, 0.75, 0.2, 0.1, 0.5], recency: 10, sessionWeight: 0.5, segmentCount: nil))
    /// Too few subjects for the hybrid: the ranker is popularity.
    static let tiny = CodingFixture(users: 6, seed: 12)

    init(users: Int, items: Int = 60, seed: UInt64, fixing hyperparameters: ServingModel.Hyperparameters? = nil) {
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        let shop = SampleShop(users: users, items: items, days: 30, seed: seed, start: start)
        let items = shop.items.map(\.id)
        let itemIndex = Dictionary(uniqueKeysWithValues: items.enumerated().map { ($1, Int32($0)) })
        let userIndex = Dictionary(uniqueKeysWithValues: shop.users.enumerated().map { ($1.id, $0) })
        let parse = ISO8601DateFormatter()
        var interactions: [(user: Int32, item: Int32, weight: Float, time: Int64)] = []
        var histories = [[StoredInteraction]](repeating: [], count: shop.users.count)
        var counts = [Float](repeating: 0, count: items.count)
        var purchases = [Int](repeating: 0, count: shop.users.count)
        for event in shop.events {
            guard let u = userIndex[event.subject], let time = parse.date(from: event.timestamp).map({ Int64($0.timeIntervalSince1970) }) else {
                continue
            }
            let signals: [(String, InteractionKind, Float)] =
                switch event.kind {
                case "page_view": event.item.map { [($0, .pageView, 1)] } ?? []
                case "purchase": (event.lines ?? []).map { ($0.item, .purchase, 4) }
                case "feedback": event.item.map { [($0, .rating, Float(event.value ?? 3) / 5)] } ?? []
                default: []
                }
            for (item, kind, weight) in signals {
                guard let i = itemIndex[item] else { continue }
                interactions.append((Int32(u), i, weight, time))
                histories[u].append(StoredInteraction(item: item, kind: kind, weight: weight, time: time))
                counts[Int(i)] += 1
                if kind == .purchase { purchases[u] += 1 }
            }
        }
        let profiles = shop.users.enumerated().map { n, user -> [String: String] in
            var profile = [
                "location": user.location, "device": user.device.contains("iPhone") || user.device.contains("Android") ? "mobile" : "desktop",
            ]
            if n % 3 != 0 { profile["age_band"] = Self.band(user.age) }
            return profile
        }
        let tokens = shop.users.indices.map { n in SubjectToken(digest: (0..<16).map { UInt8(truncatingIfNeeded: n >> (8 * ($0 % 8))) ^ UInt8($0) }) }
        snapshot = TrainingSnapshot(
            tokens: tokens, items: items, interactions: interactions, anonymousCounts: counts, profiles: profiles, purchases: purchases)
        let catalog = shop.items.map {
            CatalogItem(
                id: $0.id, title: $0.title, category: $0.category, brand: $0.brand, price: $0.price, available: $0.available,
                attributes: $0.attributes, tags: $0.tags)
        }
        var options = ServingOptions()
        options.segmentStrategies = ["premium buyers": .premium, "bargain hunters": .clearance, "trend-seekers": .newArrivals]
        options.segmentsForCampaigns = true
        options.minimumSegmentSize = 3
        now = start.addingTimeInterval(31 * 86_400)
        var model = ServingModel.train(snapshot: snapshot, catalog: catalog, options: options, threads: 2, now: now, fixing: hyperparameters)
        fingerprinter = Fingerprinter.ephemeral(.modelProvenance)
        model.provenance = ModelProvenance(tokens: tokens, fingerprinter: fingerprinter)
        self.model = model
        self.histories = histories
    }

    static func band(_ age: Int) -> String {
        switch age {
        case ..<25: "18-24"
        case ..<35: "25-34"
        case ..<45: "35-44"
        case ..<55: "45-54"
        case ..<65: "55-64"
        default: "65+"
        }
    }

    /// Every list the ranker gives each subject: from their history (with their behaviour segment's strategy), from
    /// their profile alone (cold start), from the last three items of their history as a session, anonymously, and
    /// for a search.
    func lists(_ model: ServingModel) -> [RankedList] {
        let time = Int64(now.timeIntervalSince1970)
        var query = RecommendationQuery()
        query.k = 12
        var out: [Ranker.Result] = []
        for (t, history) in histories.enumerated() {
            var ranker = Ranker(model: model)
            ranker.segment = model.segmentModel?.segment(of: history, catalog: model.catalogByID, types: model.productTypes, now: time)
            out.append(ranker.rank(history: history, session: [], profile: snapshot.profiles[t], query: query, now: now))
            out.append(Ranker(model: model).rank(history: [], session: [], profile: snapshot.profiles[t], query: query, now: now))
            out.append(Ranker(model: model).rank(history: [], session: history.suffix(3).map(\.item), profile: nil, query: query, now: now))
        }
        out.append(Ranker(model: model).rank(history: [], session: [], profile: nil, query: query, now: now))
        let search = StoredInteraction(
            item: "", kind: .searchTerms, weight: 1, time: time - 60, terms: model.content.hasher.signedTerms("sneaker navy"),
            termWidth: Int32(model.content.hasher.width))
        out.append(Ranker(model: model).rank(history: [search], session: [], profile: nil, query: query, now: now))
        return out.map(RankedList.init)
    }

    /// The ranker's scores for every training user's row (ALS factors) with a one-item history of each item.
    func rowScores(_ model: ServingModel) -> [Float] {
        var out: [Float] = []
        var scores = [Float](repeating: 0, count: model.items.count)
        for u in 0..<model.users {
            let context = UserContext(user: u, items: [Int32(u % model.items.count)], time: Int64(now.timeIntervalSince1970))
            scores.withUnsafeMutableBufferPointer { model.ranker.score(context, into: $0) }
            out += scores
        }
        return out
    }
}

/// A ranked list, comparable.
struct RankedList: Equatable {
    var personalized: Bool
    var items: [RecommendedItem]
    init(_ result: Ranker.Result) { (personalized, items) = (result.personalized, result.items) }
}

/// Where two long arrays first differ, for a failure message that does not print them whole; nil when equal.
func firstDifference<T: Equatable>(_ a: [T], _ b: [T]) -> String? {
    guard a != b else { return nil }
    guard let i = (0..<min(a.count, b.count)).first(where: { a[$0] != b[$0] }) else { return "counts \(a.count) and \(b.count)" }
    return "at \(i): \(a[i]) and \(b[i])"
}

/// Stands in for a model type the encoding does not know.
private struct UnknownModel: ScoringModel {
    let name = "unknown"
    let itemCount: Int
    func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<out.count { out[i] = 0 }
    }
}

@Suite struct ModelCodingTests {
    @Test func aDecodedHybridRanksExactlyAsTheModelItWasEncodedFrom() throws {
        let f = CodingFixture.shop
        let original = f.model
        let hybrid = try #require(original.ranker as? HybridModel)
        #expect(hybrid.components.map(\.name) == HybridTrainer.componentNames && hybrid.recency == 10)
        #expect((hybrid.components[3] as? TrendingModel)?.precomputed != nil)
        #expect(original.segmentModel != nil && !original.imputedAgeBands.isEmpty && !original.strategyItems.isEmpty)
        let bytes = try original.encoded()
        let decoded = try ServingModel(encoded: bytes)
        #expect(try decoded.encoded() == bytes, "byte-stable")
        #expect(decoded.training == nil)

        let lists = f.lists(original)
        #expect(lists.contains { $0.items.contains { $0.reason.hasPrefix("because-you") } }, "lists explained by neighbours")
        #expect(lists.contains { $0.items.contains { $0.reason.hasPrefix("popular-in-your") } }, "cold-start lists by segment")
        #expect(firstDifference(f.lists(decoded), lists) == nil)
        #expect(firstDifference(f.rowScores(decoded), f.rowScores(original)) == nil)

        #expect(decoded.version == original.version && decoded.users == original.users && decoded.userTokens == original.userTokens)
        #expect(decoded.options == original.options && decoded.blendWeights == original.blendWeights)
        #expect(decoded.hyperparameters == original.hyperparameters)
        #expect(decoded.items == original.items && decoded.itemIndex == original.itemIndex && decoded.titles == original.titles)
        #expect(decoded.categories == original.categories && decoded.available == original.available && decoded.cold == original.cold)
        #expect(decoded.popularity == original.popularity && decoded.trending == original.trending)
        #expect(decoded.imputedAgeBands == original.imputedAgeBands && decoded.strategyItems == original.strategyItems)
        #expect(decoded.catalogByID == original.catalogByID && decoded.productTypes == original.productTypes)
        #expect(decoded.behaviourScaler == original.behaviourScaler && decoded.behaviourFeatureNames == original.behaviourFeatureNames)
        #expect(decoded.sessionWeight == original.sessionWeight && decoded.sessionModel.owners == original.sessionModel.owners)
        #expect(decoded.sessionModel.sessions == original.sessionModel.sessions)
        let segments = try #require(decoded.segmentModel), originalSegments = try #require(original.segmentModel)
        #expect(segments.assignments == originalSegments.assignments && segments.segments == originalSegments.segments)
        #expect(segments.centroids == originalSegments.centroids && segments.scaler == originalSegments.scaler)

        let provenance = try #require(decoded.provenance), originalProvenance = try #require(original.provenance)
        #expect(provenance.digest == originalProvenance.digest && provenance.subjects == originalProvenance.subjects)
        for token in f.snapshot.tokens { #expect(provenance.contains(token.rawValue, fingerprinter: f.fingerprinter)) }
        #expect(!provenance.contains(String(repeating: "0", count: 32), fingerprinter: f.fingerprinter))

        // What only unlearning needs is not in the bytes: a decoded model cannot unlearn, and says so.
        let token = f.snapshot.tokens[1].rawValue
        #expect(decoded.unlearning([token]) == nil && decoded.retrained(without: [token]) == nil)
        let ease = try #require((decoded.ranker as? HybridModel)?.components.compactMap { $0 as? EASEModel }.first)
        let split = try #require(original.trainingSplit)
        #expect(ease.unlearning(UnlearningRequest(removing: [1], from: split)) == nil)
        #expect(decoded.neighbours.unlearning(UnlearningRequest(removing: [1], from: split)) == nil)
    }

    @Test func aPopularityModelRoundTrips() throws {
        let f = CodingFixture.tiny
        #expect(f.model.ranker is PopularityModel)
        let bytes = try f.model.encoded()
        let decoded = try ServingModel(encoded: bytes)
        #expect(decoded.ranker is PopularityModel && (decoded.ranker as? PopularityModel)?.counts == (f.model.ranker as? PopularityModel)?.counts)
        #expect(firstDifference(f.lists(decoded), f.lists(f.model)) == nil)
        #expect(decoded.segmentModel != nil && decoded.users == f.model.users && decoded.userTokens == f.model.userTokens)
        #expect(try decoded.encoded() == bytes)
    }

    /// A gateway that loaded the model forgets a subject as the one that trained it does: their ALS factors zeroed,
    /// their sessions gone, their imputed age band and segment assignment dropped.
    @Test func aDecodedModelForgetsASubjectAsTheOriginalDoes() throws {
        let f = CodingFixture.shop
        let original = f.model
        let decoded = try ServingModel(encoded: try original.encoded())
        let als = try #require((original.ranker as? HybridModel)?.components.compactMap { $0 as? ALSModel }.first)
        // A subject with something of each kind to forget.
        let u = try #require(
            original.userTokens.indices.first { u in
                original.imputedAgeBands[original.userTokens[u]] != nil && original.sessionModel.owners?.contains(Int32(u)) == true
                    && original.segmentModel?.assignments[original.userTokens[u]] != nil
            })
        let token = original.userTokens[u]
        let factors = { (m: ServingModel) in
            ((m.ranker as? HybridModel)?.components.compactMap { $0 as? ALSModel }.first?.userFactors) ?? []
        }
        #expect(factors(original)[(u * als.factors)..<((u + 1) * als.factors)].contains { $0 != 0 })

        let forgotten = try #require(original.forgetting([token], detach: true))
        let forgottenDecoded = try #require(decoded.forgetting([token], detach: true))
        #expect(factors(forgottenDecoded)[(u * als.factors)..<((u + 1) * als.factors)].allSatisfy { $0 == 0 })
        #expect(firstDifference(factors(forgottenDecoded), factors(forgotten)) == nil)
        #expect(forgottenDecoded.sessionModel.owners?.contains(Int32(u)) == false)
        #expect(forgottenDecoded.sessionModel.owners == forgotten.sessionModel.owners)
        #expect(forgottenDecoded.sessionModel.sessions == forgotten.sessionModel.sessions)
        #expect(forgottenDecoded.sessionModel.sessions.count < original.sessionModel.sessions.count)
        #expect(forgottenDecoded.imputedAgeBands[token] == nil && forgottenDecoded.imputedAgeBands == forgotten.imputedAgeBands)
        #expect(forgottenDecoded.segmentModel?.assignments[token] == nil)
        #expect(forgottenDecoded.segmentModel?.assignments == forgotten.segmentModel?.assignments)
        // Their token is gone from the row list, replaced by a random one; every other row keeps its token.
        #expect(!forgottenDecoded.userTokens.contains(token) && !forgotten.userTokens.contains(token))
        for v in original.userTokens.indices where v != u { #expect(forgottenDecoded.userTokens[v] == original.userTokens[v]) }
        #expect(forgotten.training?.split.users == forgotten.userTokens, "kept in step with the training data")
        #expect(firstDifference(f.lists(forgottenDecoded), f.lists(forgotten)) == nil)
        #expect(firstDifference(f.rowScores(forgottenDecoded), f.rowScores(forgotten)) == nil)
        // Once: nothing of them is left to forget, and the forgetting survives another encoding.
        #expect(forgottenDecoded.forgetting([token], detach: true) == nil)
        let reloaded = try ServingModel(encoded: try forgottenDecoded.encoded())
        #expect(!reloaded.userTokens.contains(token) && firstDifference(factors(reloaded), factors(forgotten)) == nil)

        // A withdrawal that deletes nothing drops only the derived tables.
        let withdrawn = try #require(decoded.forgetting([token], detach: false))
        #expect(withdrawn.imputedAgeBands[token] == nil && withdrawn.segmentModel?.assignments[token] == nil)
        #expect(withdrawn.userTokens == decoded.userTokens && firstDifference(factors(withdrawn), factors(decoded)) == nil)
        #expect(decoded.forgetting([String(repeating: "f", count: 32)], detach: true) == nil)
    }

    @Test func hostileBytesThrowAndNeverTrap() throws {
        let bytes = try CodingFixture.tiny.model.encoded()
        // Every length in the header and the first values, then a sample (each decode reads up to the cut: all of them
        // would cost seconds of CPU, which the suites running beside this one need).
        for n in Array(0..<min(256, bytes.count)) + Array(stride(from: 256, to: bytes.count, by: 13)) {
            #expect(throws: ModelCodingError.self) { try ServingModel(encoded: Array(bytes[0..<n])) }
        }
        let hybrid = try CodingFixture.shop.model.encoded()
        for n in stride(from: 0, to: hybrid.count, by: 983) {
            #expect(throws: ModelCodingError.self) { try ServingModel(encoded: Array(hybrid[0..<n])) }
        }
        #expect(throws: ModelCodingError.inconsistent("1 trailing bytes")) { try ServingModel(encoded: bytes + [0]) }
        var magic = bytes
        magic[0] ^= 0xFF
        #expect(throws: ModelCodingError.notAModel("magic")) { try ServingModel(encoded: magic) }
        var version = bytes
        version[4] &+= 1
        #expect(throws: ModelCodingError.unsupportedVersion("version 2, expected 1")) { try ServingModel(encoded: version) }
        // The version string's length, then the item count, claim far more than there is: refused before allocating.
        for offset in [6, 6 + 8 + bytes[6...].withUnsafeBytes { Int($0.loadUnaligned(as: UInt64.self)) }] {
            for huge in [UInt64.max, UInt64(Int.max), UInt64(bytes.count)] {
                var lying = bytes
                withUnsafeBytes(of: huge.littleEndian) { lying.replaceSubrange(offset..<(offset + 8), with: $0) }
                #expect(throws: ModelCodingError.self) { try ServingModel(encoded: lying) }
            }
        }
        // Damaged bytes anywhere (a flipped byte, a random or a small 64-bit word) either throw or give a model that
        // ranks and forgets without trapping: a damaged count or size never reaches an allocation or an index unchecked.
        let f = CodingFixture.shop
        var query = RecommendationQuery()
        query.k = 5
        var rng = SeededGenerator(seed: 3)
        for trial in 0..<300 {
            var damaged = hybrid
            let at = 6 + Int(rng.next() % UInt64(hybrid.count - 14))
            switch trial % 3 {
            case 0: damaged[at] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            case 1: withUnsafeBytes(of: rng.next()) { damaged.replaceSubrange(at..<(at + 8), with: $0) }
            default: withUnsafeBytes(of: rng.next() % 300) { damaged.replaceSubrange(at..<(at + 8), with: $0) }
            }
            guard let model = try? ServingModel(encoded: damaged) else { continue }
            let history = f.histories[trial % f.histories.count]
            var ranker = Ranker(model: model)
            ranker.segment = model.segmentModel?.segment(of: history, catalog: model.catalogByID, types: model.productTypes, now: 0)
            _ = ranker.rank(history: history, session: Array(model.items.prefix(2)), profile: f.snapshot.profiles[0], query: query, now: f.now)
            _ = Ranker(model: model).rank(history: [], session: [], profile: f.snapshot.profiles[1], query: query, now: f.now)
            _ = model.forgetting(Set(model.userTokens.prefix(1)), detach: true)
        }
    }

    @Test func aModelTypeWithoutAnEncodingIsRefusedNotDropped() throws {
        var model = CodingFixture.tiny.model
        model.ranker = UnknownModel(itemCount: model.items.count)
        #expect(throws: ModelCodingError.unencodable("no encoding for model type UnknownModel")) { try model.encoded() }
        model.ranker = HybridModel(
            components: [PopularityModel(counts: [Float](repeating: 1, count: model.items.count)), model.ranker], weights: [1, 1])
        #expect(throws: ModelCodingError.self) { try model.encoded() }
        // A hybrid's zero-weight stand-in is a part of trained models, and is kept.
        model.ranker = HybridModel(
            components: [PopularityModel(counts: [Float](repeating: 1, count: model.items.count)), ZeroModel(itemCount: model.items.count)],
            weights: [1, 0])
        let decoded = try ServingModel(encoded: try model.encoded())
        #expect((decoded.ranker as? HybridModel)?.components.last is ZeroModel)
    }
}
