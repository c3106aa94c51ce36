import Foundation

/// Top-K ranking metrics exactly as `shared/data/ml-100k/split/PROTOCOL.md` defines them.
public struct RankingMetrics: Sendable, Equatable {
    public var precision: Double
    public var recall: Double
    public var ndcg: Double
    public var map: Double
    public var coverage: Double
    /// Users averaged over (those with at least one relevant item).
    public var users: Int

    /// - Parameters:
    ///   - recommendations: per user, the ordered list returned (at most k items).
    ///   - relevant: per user, the set of relevant (test) items; users with none are skipped.
    ///   - catalogSize: denominator of coverage.
    public static func compute(recommendations: [[Int32]], relevant: [Set<Int32>], k: Int, catalogSize: Int) -> RankingMetrics {
        precondition(recommendations.count == relevant.count)
        var p = 0.0, r = 0.0, n = 0.0, m = 0.0
        var users = 0
        var shown = Set<Int32>()
        for (list, truth) in zip(recommendations, relevant) {
            for item in list.prefix(k) { shown.insert(item) }
            guard !truth.isEmpty else { continue }
            users += 1
            var hits = 0, dcg = 0.0, precisionSum = 0.0
            for (position, item) in list.prefix(k).enumerated() where truth.contains(item) {
                hits += 1
                dcg += 1 / log2(Double(position) + 2)
                precisionSum += Double(hits) / Double(position + 1)
            }
            let ideal = min(truth.count, k)
            let idcg = (0..<ideal).reduce(0.0) { $0 + 1 / log2(Double($1) + 2) }
            p += Double(hits) / Double(k)
            r += Double(hits) / Double(truth.count)
            n += dcg / idcg
            m += precisionSum / Double(ideal)
        }
        let count = Double(max(users, 1))
        return RankingMetrics(
            precision: p / count, recall: r / count, ndcg: n / count, map: m / count,
            coverage: Double(shown.count) / Double(max(catalogSize, 1)), users: users)
    }
}
