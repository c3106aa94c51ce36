import Foundation
import Testing
@testable import Recommender

/// A slice of MovieLens 100K's fixed training split (users ≤ 300, items ≤ 400, ratings as weights), read from
/// ../shared beside the repository: a missing copy fails rather than skips. Debug builds keep the slice small.
func movieLensSlice(weightScale: Float? = nil) throws -> EvaluationSplit {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    func rows(_ name: String) throws -> [RatingRow] {
        let path = root.deletingLastPathComponent().appendingPathComponent("shared/data/ml-100k/split/\(name)").standardizedFileURL.path
        try #require(FileManager.default.fileExists(atPath: path), "\(path) is missing: tests need ../shared beside the repository")
        return try Dataset.parseRatings(String(contentsOfFile: path, encoding: .utf8))
            .filter { Int($0.user)! <= 300 && Int($0.item)! <= 400 }
    }
    let split = EvaluationSplit(train: try rows("train.tsv"), test: try rows("test.tsv"))
    guard let weightScale else { return split }
    // Weights no binary fraction holds, so that sums of their products round (the split itself keeps weight 1).
    return EvaluationSplit(
        users: split.users, items: split.items,
        train: split.train.map { Interaction(user: $0.user, item: $0.item, weight: weightScale * Float(1 + ($0.user + $0.item) % 5), time: $0.time) },
        relevant: split.relevant, itemContent: split.itemContent)
}

/// A sparse catalog (2,000 items, 300 users with 6 each): removing a user changes few items, so item-kNN re-ranks
/// the other rows among their old neighbours and the changed items only.
func sparseSplit() -> EvaluationSplit {
    var rng = SeededGenerator(seed: 3)
    var train: [Interaction] = []
    for u in 0..<300 {
        let base = Int(rng.next() % 1900)
        for j in 0..<6 {
            train.append(
                Interaction(user: Int32(u), item: Int32(base + Int(rng.next() % 100)), weight: 0.37 * Float(1 + j % 3), time: Int64(u * 10 + j)))
        }
    }
    return EvaluationSplit(
        users: (0..<300).map { "u\($0)" }, items: (0..<2000).map { "i\($0)" }, train: train,
        relevant: [Set<Int32>](repeating: [], count: 300),
        itemContent: [ItemContent](repeating: ItemContent(productType: "", categorical: [], text: []), count: 2000))
}

/// Scores of every remaining user (by their history, as the gateway serves) from two models.
func largestScoreGap(_ a: any ScoringModel, _ b: any ScoringModel, on split: EvaluationSplit) -> Float {
    var gap: Float = 0
    var x = [Float](repeating: 0, count: a.itemCount), y = x
    for u in 0..<split.users.count {
        var context = split.context(forUser: u)
        context.user = nil
        x.withUnsafeMutableBufferPointer { a.score(context, into: $0) }
        y.withUnsafeMutableBufferPointer { b.score(context, into: $0) }
        for i in 0..<x.count { gap = max(gap, abs(x[i] - y[i]) / max(1, abs(y[i]))) }
    }
    return gap
}

/// Mean share of the top 10 two models agree on, over the remaining users.
func topTenAgreement(_ a: any ScoringModel, _ b: any ScoringModel, on split: EvaluationSplit) -> Double {
    var shared = 0.0
    for u in 0..<split.users.count {
        var context = split.context(forUser: u)
        context.user = nil
        let x = Set(a.recommend(context, k: 10).items), y = Set(b.recommend(context, k: 10).items)
        shared += Double(x.intersection(y).count) / 10
    }
    return shared / Double(split.users.count)
}

@Suite struct ModelUnlearningTests {
    /// One heavy user, one light one, and ten together (a batch).
    static let removals: [Set<Int>] = [[0], [17], Set(stride(from: 3, to: 300, by: 29))]

    /// Weight 1, and weights that no binary fraction holds (sums of their products round).
    @Test(arguments: [nil, Float(0.37)])
    func itemKNNForgetsExactlyBySubtraction(weightScale: Float?) throws {
        let split = try movieLensSlice(weightScale: weightScale)
        let model = ItemKNN(similarity: .cosine, neighbours: 20).fit(split.trainMatrix)
        for removed in Self.removals {
            let request = UnlearningRequest(removing: removed, from: split)
            let unlearned = try #require(model.unlearning(request))
            let scratch = ItemKNN(similarity: .cosine, neighbours: 20).fit(request.after.trainMatrix)
            #expect(unlearned.similarities.offsets == scratch.similarities.offsets)
            #expect(unlearned.similarities.indices == scratch.similarities.indices)
            #expect(largestScoreGap(unlearned, scratch, on: request.after) < 1e-5)
            // The subject was there to forget: without the subtraction the model differs.
            #expect(largestScoreGap(model, scratch, on: request.after) > 1e-3)
        }
        #expect(ItemKNN(similarity: .bm25).fit(split.trainMatrix).unlearning(UnlearningRequest(removing: [0], from: split)) == nil)
    }

    /// The partial re-ranking (few items changed) against a refit, on a sparse catalog.
    @Test func itemKNNReRanksOnlyWhatARemovalCanChange() throws {
        let split = sparseSplit()
        let model = ItemKNN(similarity: .cosine, neighbours: 10).fit(split.trainMatrix)
        for removed: Set<Int> in [[0], [5, 77, 140, 299]] {
            let request = UnlearningRequest(removing: removed, from: split)
            let changed = Set(removed.flatMap { request.row($0).items })
            #expect(changed.count <= split.items.count / 8, "the partial path is the one under test")
            let unlearned = try #require(model.unlearning(request))
            let scratch = ItemKNN(similarity: .cosine, neighbours: 10).fit(request.after.trainMatrix)
            #expect(unlearned.similarities.offsets == scratch.similarities.offsets)
            #expect(unlearned.similarities.indices == scratch.similarities.indices)
            #expect(zip(unlearned.similarities.values, scratch.similarities.values).allSatisfy { abs($0 - $1) <= 1e-6 })
            #expect(model.similarities.indices != scratch.similarities.indices)
        }
    }

    @Test func easeForgetsExactlyByShermanMorrison() throws {
        let split = try movieLensSlice()
        let model = EASE(regularization: 100).fit(split.trainMatrix)
        for removed in Self.removals {
            let request = UnlearningRequest(removing: removed, from: split)
            let unlearned = try #require(model.unlearning(request))
            let scratch = EASE(regularization: 100).fit(request.after.trainMatrix)
            let gap = zip(unlearned.weights, scratch.weights).map { abs($0 - $1) }.max()!
            #expect(gap < 1e-5)
            #expect(zip(model.weights, scratch.weights).map { abs($0 - $1) }.max()! > 1e-3)
        }
    }

    /// With more items than it models, EASE forgets over the items it chose, equal to a fit without the subjects, as
    /// long as that fit would choose the same items; when it would not, unlearning returns nil (the caller refits).
    @Test func easeOverItsModeledItemsForgetsExactly() throws {
        let split = try movieLensSlice()
        let model = EASE(regularization: 100, maxItems: 60).fit(split.trainMatrix)
        #expect(model.items.count == 60 && split.items.count > 60)
        let index = Dictionary(uniqueKeysWithValues: model.items.enumerated().map { ($1, Int32($0)) })
        var exact = 0
        for removed in Self.removals {
            let request = UnlearningRequest(removing: removed, from: split)
            // Removals that move an item across the cut are the refit case below.
            guard EASE.mostInteracted(request.after.trainMatrix, limit: 60) == model.items else { continue }
            exact += 1
            let unlearned = try #require(model.unlearning(request))
            #expect(unlearned.items == model.items)
            let after = request.after.trainMatrix
            var entries: [(row: Int32, column: Int32, value: Float)] = []
            for u in 0..<after.rows {
                for k in after.offsets[u]..<after.offsets[u + 1] {
                    if let p = index[after.indices[k]] { entries.append((Int32(u), p, after.values[k])) }
                }
            }
            let scratch = EASE(regularization: 100).fit(SparseMatrix(rows: after.rows, columns: 60, entries: entries))
            #expect(zip(unlearned.weights, scratch.weights).map { abs($0 - $1) }.max()! < 1e-5)
            #expect(zip(model.weights, scratch.weights).map { abs($0 - $1) }.max()! > 1e-4)
        }
        #expect(exact >= 2, "too few removals keep the modeled items: the exact case is not tested")
        // Removing everyone who chose the least interacted-with modeled item drops it from the items a fit without
        // them would model: then only a refit is exact, and unlearning says so.
        let counts = split.trainMatrix.columnCounts()
        let weakest = model.items.min { (counts[Int($0)], -$0) < (counts[Int($1)], -$1) }!
        let choosers = Set((0..<split.trainMatrix.rows).filter { split.trainMatrix.columns(ofRow: $0).contains(weakest) })
        let request = UnlearningRequest(removing: choosers, from: split)
        #expect(EASE.mostInteracted(request.after.trainMatrix, limit: 60) != model.items)
        #expect(model.unlearning(request) == nil)
    }

    @Test func countsTrendingSessionsAndContentForgetExactly() throws {
        let split = try movieLensSlice()
        let popularity = PopularityModel(split.trainMatrix)
        let trending = TrendingModel(itemCount: split.items.count, interactions: split.train, halfLife: 7 * 86_400)
        let fixedAt = split.train.map(\.time).max()!
        let served = trending.precomputing(at: fixedAt)
        let sessions = SessionData.sessions(from: split.train, gap: 1800)
        let sknn = SessionKNN(sessions: sessions.map(\.items), owners: sessions.map(\.user), items: split.items.count)
        for removed in Self.removals {
            let request = UnlearningRequest(removing: removed, from: split)
            #expect(try #require(popularity.unlearning(request)).counts == PopularityModel(request.after.trainMatrix).counts)
            let scratchTrending = TrendingModel(itemCount: split.items.count, interactions: request.after.train, halfLife: 7 * 86_400)
            #expect(largestScoreGap(try #require(trending.unlearning(request)), scratchTrending, on: request.after) == 0)
            #expect(largestScoreGap(try #require(served.unlearning(request)), scratchTrending.precomputing(at: fixedAt), on: request.after) == 0)
            let scratchSessions = SessionData.sessions(from: request.after.train, gap: 1800)
            let unlearnedSessions = try #require(sknn.unlearning(request))
            #expect(unlearnedSessions.sessions == SessionKNN(sessions: scratchSessions.map(\.items), items: split.items.count).sessions)
            #expect(unlearnedSessions.owners == scratchSessions.map(\.user))
            #expect(unlearnedSessions.sessions.count < sknn.sessions.count)
        }
        #expect(
            SessionKNN(sessions: sessions.map(\.items), items: split.items.count).unlearning(UnlearningRequest(removing: [0], from: split)) == nil)
    }

    /// ALS is unlearned by one exact half-step on the item side. A model trained from scratch without the subject
    /// takes another path from its random start, so the bound is stated against that path's own spread: the
    /// unlearned model agrees with a scratch model on the top 10 at least as well as two scratch models started from
    /// different seeds agree with each other, less 0.05.
    @Test func alsHalfStepStaysWithinTheSpreadOfRetraining() throws {
        let split = try movieLensSlice()
        var cfg = ALS.Configuration()
        cfg.factors = 16
        cfg.iterations = 10
        let model = ALS(cfg).fit(split.trainMatrix)
        let request = UnlearningRequest(removing: Self.removals[2], from: split)
        let unlearned = try #require(model.unlearning(request))
        #expect(!unlearned.unlearnsExactly)
        #expect(unlearned.userFactors.count == request.after.users.count * cfg.factors)
        let scratch = ALS(cfg).fit(request.after.trainMatrix)
        var other = cfg
        other.seed = 7
        let scratchOtherSeed = ALS(other).fit(request.after.trainMatrix)
        let spread = topTenAgreement(scratch, scratchOtherSeed, on: request.after)
        let agreement = topTenAgreement(unlearned, scratch, on: request.after)
        #expect(agreement >= spread - 0.05, "unlearned vs scratch \(agreement), scratch vs scratch \(spread)")
        var bpr = BPR.Configuration()
        bpr.iterations = 1
        #expect(BPR(bpr).fit(split.trainMatrix).unlearning(request) == nil)
    }

    @Test func aHybridOfExactComponentsForgetsExactly() throws {
        let split = try movieLensSlice()
        let components: [any ScoringModel] = [
            EASE(regularization: 100).fit(split.trainMatrix), ItemKNN().fit(split.trainMatrix),
            PopularityModel(split.trainMatrix),
        ]
        let hybrid = HybridModel(components: components, weights: [1, 0.5, 0.1])
        let request = UnlearningRequest(removing: Self.removals[2], from: split)
        let unlearned = try #require(hybrid.unlearning(request))
        #expect(unlearned.unlearnsExactly)
        let scratch = HybridModel(
            components: [
                EASE(regularization: 100).fit(request.after.trainMatrix), ItemKNN().fit(request.after.trainMatrix),
                PopularityModel(request.after.trainMatrix),
            ], weights: [1, 0.5, 0.1])
        #expect(largestScoreGap(unlearned, scratch, on: request.after) < 1e-3)
        let withALS = HybridModel(components: components + [ALS().fit(split.trainMatrix)], weights: [1, 0.5, 0.1, 0.2])
        #expect(try #require(withALS.unlearning(request)).unlearnsExactly == false)
    }
}
