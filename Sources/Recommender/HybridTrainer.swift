/// Learns the hybrid's blend weights on a validation split carved from train (never on test), then
/// refits every component on the whole training data with those weights.
public struct HybridTrainer: Sendable {
    public static let componentNames = ["ease", "als", "item-knn", "trending", "popularity", "content"]
    public var options: ModelCatalog.Options
    /// Candidate values for each weight during coordinate ascent.
    public var grid: [Float] = [0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1]
    public var rounds = 2

    public init(options: ModelCatalog.Options) { self.options = options }

    /// The chosen weights and the validation NDCG@10 they reached.
    public func chooseWeights(on validation: EvaluationSplit) -> (weights: [Float], ndcg: Double) {
        let components = Self.componentNames.map { try! ModelCatalog.fit($0, on: validation, options: options) }
        let users = (0..<validation.users.count).filter { !validation.relevant[$0].isEmpty }
        let n = validation.items.count
        // Standardised scores of every component for every validation user, computed once.
        var table = [[Float]](repeating: [], count: components.count)
        for (c, model) in components.enumerated() {
            var rows = [Float](repeating: 0, count: users.count * n)
            rows.withShared { out in
                parallelChunks(count: users.count, threads: options.threads) { range in
                    for r in range {
                        let b = UnsafeMutableBufferPointer(start: out.base + r * n, count: n)
                        model.score(validation.context(forUser: users[r]), into: b)
                        HybridModel.standardise(b)
                    }
                }
            }
            table[c] = rows
        }
        func evaluate(_ weights: [Float]) -> Double {
            var lists = [[Int32]](repeating: [], count: validation.users.count)
            var blended = [Float](repeating: 0, count: n)
            for (r, u) in users.enumerated() {
                for i in 0..<n { blended[i] = 0 }
                blended.withUnsafeMutableBufferPointer { b in
                    for c in 0..<components.count where weights[c] != 0 {
                        table[c].withUnsafeBufferPointer { t in Vec.axpy(weights[c], t.baseAddress! + r * n, b.baseAddress!, n) }
                    }
                    let seen = Set(validation.context(forUser: u).items)
                    lists[u] = TopK.select(scores: UnsafeBufferPointer(b), k: 10) { seen.contains(Int32($0)) }.items
                }
            }
            return validation.metrics(lists, k: 10).ndcg
        }
        var weights = [Float](repeating: 0, count: components.count)
        weights[0] = 1
        var best = evaluate(weights)
        for _ in 0..<rounds {
            for c in 1..<components.count {
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
        return (weights, best)
    }

    public func fit(_ split: EvaluationSplit) -> HybridModel {
        fit(split, weights: chooseWeights(on: split.validationSplit()).weights)
    }

    /// Fits the components on `split` with blend weights chosen before (one per ``componentNames``).
    public func fit(_ split: EvaluationSplit, weights: [Float]) -> HybridModel {
        precondition(weights.count == Self.componentNames.count)
        let components = zip(Self.componentNames, weights).map { name, weight -> any ScoringModel in
            // A zero-weight component is not trained on the full data: it would not change a score.
            weight == 0 ? ZeroModel(itemCount: split.items.count) : try! ModelCatalog.fit(name, on: split, options: options)
        }
        return HybridModel(components: components, weights: weights)
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
