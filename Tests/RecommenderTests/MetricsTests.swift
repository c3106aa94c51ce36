import Foundation
import Testing
@testable import Recommender

@Suite struct MetricsTests {
    @Test func handComputedCase() {
        // User 0: hits at positions 1 and 3 of 10, 4 relevant items.
        // User 1: no hit, 2 relevant. User 2: nothing relevant, skipped in averages but counted in coverage.
        let recs: [[Int32]] = [[1, 9, 2, 8, 7, 6, 5, 4, 30, 31], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19], [40]]
        let relevant: [Set<Int32>] = [[1, 2, 3, 50], [60, 61], []]
        let m = RankingMetrics.compute(recommendations: recs, relevant: relevant, k: 10, catalogSize: 100)
        #expect(m.users == 2)
        #expect(abs(m.precision - (0.2 + 0) / 2) < 1e-12)
        #expect(abs(m.recall - (0.5 + 0) / 2) < 1e-12)
        let dcg = 1 / log2(2.0) + 1 / log2(4.0)
        let idcg = 1 / log2(2.0) + 1 / log2(3.0) + 1 / log2(4.0) + 1 / log2(5.0)
        #expect(abs(m.ndcg - (dcg / idcg) / 2) < 1e-12)
        let ap = (1.0 / 1 + 2.0 / 3) / 4
        #expect(abs(m.map - ap / 2) < 1e-12)
        #expect(abs(m.coverage - 21.0 / 100) < 1e-12)
    }

    @Test func idealDenominatorIsCappedAtK() {
        // 20 relevant items, all 10 recommended are hits: NDCG and MAP are exactly 1.
        let recs: [[Int32]] = [Array(0..<10)]
        let m = RankingMetrics.compute(recommendations: recs, relevant: [Set(0..<20)], k: 10, catalogSize: 20)
        #expect(abs(m.ndcg - 1) < 1e-12)
        #expect(abs(m.map - 1) < 1e-12)
        #expect(abs(m.recall - 0.5) < 1e-12)
    }

    @Test func topKKeepsTheHighestInOrderAndSkipsExcluded() {
        let scores: [Float] = [0.1, 0.9, 0.5, 0.95, 0.3, 0.7, .nan]
        let top = scores.withUnsafeBufferPointer { TopK.select(scores: $0, k: 3) { $0 == 3 } }
        #expect(top.items == [1, 5, 2])
        #expect(top.scores == [0.9, 0.7, 0.5])
    }
}
