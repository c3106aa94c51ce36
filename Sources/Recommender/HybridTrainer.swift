import Synchronization

/// Learns the hybrid's blend weights on a validation split carved from train (never on test), then
/// refits every component on the whole training data with those weights.
public struct HybridTrainer: Sendable {
    public static let componentNames = ["ease", "als", "item-knn", "trending", "popularity", "content"]
    public var options: ModelCatalog.Options
    /// Candidate values for each weight during coordinate ascent.
    public var grid: [Float] = [0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1]
    public var rounds = 2
    /// Validation users the blend search scores: a fixed sample past this many.
    public var maxValidationUsers = 2_000
    /// Catalogs up to this size are searched exactly; past it, among each component's ``candidates`` best per user.
    public var exactItems = 4_096
    public var candidates = 200
    /// Recency scales tried for the histories (nil: unweighted), chosen by EASE's validation NDCG@10 before the blend.
    public var recencyGrid: [Float?] = [nil, 5, 10, 20, 40]

    public init(options: ModelCatalog.Options) { self.options = options }

    /// What the search chose.
    public struct Choice: Sendable {
        /// One per ``HybridTrainer/componentNames``.
        public var weights: [Float]
        /// ``HybridModel/recency``.
        public var recency: Float?
        /// The validation NDCG@10 the choice reached.
        public var ndcg: Double
        public var blend: (weights: [Float], recency: Float?) { (weights, recency) }
    }

    /// The chosen recency scale and weights, and the validation NDCG@10 they reached.
    ///
    /// Every component's z-scores are computed once per validation user. On a catalog of at most ``exactItems`` items
    /// the search ranks every unseen item, as serving does; past that each component contributes its ``candidates``
    /// best items per user and blends are ranked within their union, which keeps the table's memory and each trial's
    /// time independent of the catalog. Past ``maxValidationUsers`` users a fixed sample of them is scored.
    public func chooseWeights(on validation: EvaluationSplit) -> Choice {
        let progress = options.progress
        progress.phase("hybrid", "validation fits", total: Self.componentNames.count)
        let components = Self.componentNames.enumerated().map { index, name in
            defer { progress.advance("hybrid", "validation fits", done: index + 1, total: Self.componentNames.count) }
            // Scored, then dropped: what only unlearning needs goes at once, not after the last fit.
            let fitted = try! ModelCatalog.fit(name, on: validation, options: options)
            return (fitted as? any Unlearnable)?.scoringOnly ?? fitted
        }
        let users = Self.sample((0..<validation.users.count).filter { !validation.relevant[$0].isEmpty }, maxValidationUsers, seed: options.seed)
        let recency = chooseRecency(components[0], on: validation, users: users)
        let n = validation.items.count, exact = n <= exactItems, count = components.count
        // Per sampled user: the candidate items (increasing), and per component the z-scores at them.
        var candidateItems = [[Int32]](repeating: [], count: users.count)
        var table = [[[Float]]](repeating: [], count: users.count)
        progress.phase("hybrid", "validation scores", total: users.count)
        let scored = Mutex(0)
        candidateItems.withShared { chosenOut in
            table.withShared { tableOut in
                parallelChunks(count: users.count, threads: options.threads) { range in
                    var rows = [Float](repeating: 0, count: count * n)
                    var seen = [Bool](repeating: false, count: n)
                    for r in range {
                        let raw = validation.context(forUser: users[r])
                        let context = recency.map { raw.weightedByRecency(scale: $0) } ?? raw
                        for i in context.items { seen[Int(i)] = true }
                        rows.withUnsafeMutableBufferPointer { all in
                            var chosen = Set<Int32>()
                            for (c, model) in components.enumerated() {
                                let row = UnsafeMutableBufferPointer(rebasing: all[(c * n)..<((c + 1) * n)])
                                model.score(context, into: row)
                                HybridModel.standardise(row)
                                if !exact { chosen.formUnion(TopK.select(scores: UnsafeBufferPointer(row), k: candidates) { seen[$0] }.items) }
                            }
                            let items = exact ? (0..<Int32(n)).filter { !seen[Int($0)] } : chosen.sorted()
                            (chosenOut.base + r).pointee = items
                            (tableOut.base + r).pointee = (0..<count).map { c in items.map { all[c * n + Int($0)] } }
                        }
                        for i in context.items { seen[Int(i)] = false }
                        let done = scored.withLock {
                            $0 += 1; return $0
                        }
                        if done % 256 == 0 { progress.advance("hybrid", "validation scores", done: done, total: users.count) }
                    }
                }
            }
        }
        let relevant = users.map { validation.relevant[$0] }
        func evaluate(_ weights: [Float]) -> Double {
            var lists = [[Int32]](repeating: [], count: users.count)
            var blended: [Float] = []
            for r in users.indices {
                let items = candidateItems[r]
                guard !items.isEmpty else { continue }
                blended.removeAll(keepingCapacity: true)
                blended.append(contentsOf: repeatElement(0, count: items.count))
                blended.withUnsafeMutableBufferPointer { b in
                    for c in 0..<count where weights[c] != 0 {
                        table[r][c].withUnsafeBufferPointer { t in Vec.axpy(weights[c], t.baseAddress!, b.baseAddress!, items.count) }
                    }
                    lists[r] = TopK.select(scores: UnsafeBufferPointer(b), k: 10) { _ in false }.items.map { items[Int($0)] }
                }
            }
            return RankingMetrics.compute(recommendations: lists, relevant: relevant, k: 10, catalogSize: n).ndcg
        }
        var weights = [Float](repeating: 0, count: components.count)
        weights[0] = 1
        var best = evaluate(weights)
        let steps = rounds * (components.count - 1)
        options.progress.phase("hybrid", "blend search", total: steps)
        for round in 0..<rounds {
            for c in 1..<components.count {
                defer { options.progress.advance("hybrid", "blend search", done: round * (components.count - 1) + c, total: steps) }
                for value in grid where value != weights[c] {
                    var trial = weights
                    trial[c] = value
                    let score = evaluate(trial)
                    if score > best + 1e-6 {
                        best = score
                        weights = trial
                    }
                }
            }
        }
        return Choice(weights: weights, recency: recency, ndcg: best)
    }

    /// The recency scale under which `model` (EASE, the first component) ranks the held-out items of `users` best.
    func chooseRecency(_ model: any ScoringModel, on validation: EvaluationSplit, users: [Int]) -> Float? {
        guard recencyGrid.count > 1 else { return recencyGrid.first ?? nil }
        options.progress.phase("hybrid", "recency", total: recencyGrid.count)
        let n = validation.items.count
        var best: (scale: Float?, ndcg: Double)?
        for (step, scale) in recencyGrid.enumerated() {
            var lists = [[Int32]](repeating: [], count: users.count)
            lists.withShared { out in
                parallelChunks(count: users.count, threads: options.threads) { range in
                    var scores = [Float](repeating: 0, count: n)
                    var seen = [Bool](repeating: false, count: n)
                    for r in range {
                        let raw = validation.context(forUser: users[r])
                        let context = scale.map { raw.weightedByRecency(scale: $0) } ?? raw
                        for i in context.items { seen[Int(i)] = true }
                        (out.base + r).pointee = scores.withUnsafeMutableBufferPointer { b in
                            model.score(context, into: b)
                            return TopK.select(scores: UnsafeBufferPointer(b), k: 10) { seen[$0] }.items
                        }
                        for i in context.items { seen[Int(i)] = false }
                    }
                }
            }
            let ndcg = RankingMetrics.compute(
                recommendations: lists, relevant: users.map { validation.relevant[$0] }, k: 10, catalogSize: n
            ).ndcg
            if ndcg > (best?.ndcg ?? -1) + 1e-9 { best = (scale, ndcg) }
            options.progress.advance("hybrid", "recency", done: step + 1, total: recencyGrid.count)
        }
        return best?.scale ?? nil
    }

    static func sample(_ users: [Int], _ limit: Int, seed: UInt64) -> [Int] {
        guard users.count > limit else { return users }
        var rng = SeededGenerator(seed: seed)
        return users.shuffled(using: &rng).prefix(limit).sorted()
    }

    public func fit(_ split: EvaluationSplit) -> HybridModel {
        let choice = chooseWeights(on: split.validationSplit())
        return fit(split, weights: choice.weights, recency: choice.recency)
    }

    /// Fits the components on `split` with blend weights (one per ``componentNames``) and recency chosen before.
    public func fit(_ split: EvaluationSplit, weights: [Float], recency: Float? = nil) -> HybridModel {
        precondition(weights.count == Self.componentNames.count)
        options.progress.phase("hybrid", "final fits", total: weights.filter { $0 != 0 }.count)
        let components = zip(Self.componentNames, weights).map { name, weight -> any ScoringModel in
            // A zero-weight component is not trained on the full data: it would not change a score.
            weight == 0 ? ZeroModel(itemCount: split.items.count) : try! ModelCatalog.fit(name, on: split, options: options)
        }
        return HybridModel(components: components, weights: weights, recency: recency)
    }
}

/// Scores nothing; stands in for a component whose blend weight is zero.
struct ZeroModel: ScoringModel {
    let name = "zero"
    let itemCount: Int
    func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<out.count { out[i] = 0 }
    }
}
