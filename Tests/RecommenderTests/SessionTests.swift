import Foundation
import Testing
@testable import Recommender

@Suite struct SessionTests {
    /// Every parameter array's hand-written gradient matches central differences of the loss.
    @Test func gru4recBackpropagationMatchesNumericalGradients() {
        var p = GRU4Rec.Parameters(items: 7, hidden: 5, seed: 3)
        // Non-zero biases so their gradients are exercised away from the symmetric point.
        var rng = SeededGenerator(seed: 9)
        for name in ["bz", "br", "bh", "outputBias"] { p[array: name] = p[array: name].map { _ in rng.nextFloat() - 0.5 } }
        let h: [Float] = [0.3, -0.2, 0.5, 0.1, -0.4]
        let (_, gradient, _) = GRU4Rec.lossAndGradient(p, item: 2, h: h, target: 4, negatives: [0, 5, 6, 1], regularization: 1)
        let analytic = gradient.dense(like: p)
        let eps: Float = 1e-2
        var checked = 0
        for name in GRU4Rec.Parameters.arrayNames {
            let values = p[array: name]
            // Up to 8 coordinates per array, including the ones this step touches.
            let touched = values.indices.filter { analytic[array: name][$0] != 0 }
            for i in Array(touched.prefix(6)) + [0, values.count - 1] {
                var plus = p, minus = p
                plus[array: name][i] += eps
                minus[array: name][i] -= eps
                let lp = GRU4Rec.lossAndGradient(plus, item: 2, h: h, target: 4, negatives: [0, 5, 6, 1], regularization: 1).loss
                let lm = GRU4Rec.lossAndGradient(minus, item: 2, h: h, target: 4, negatives: [0, 5, 6, 1], regularization: 1).loss
                let numeric = Float((lp - lm) / Double(2 * eps))
                let a = analytic[array: name][i]
                #expect(abs(a - numeric) <= 2e-3 + 0.03 * max(abs(a), abs(numeric)), "\(name)[\(i)]: analytic \(a), numeric \(numeric)")
                checked += 1
            }
        }
        #expect(checked > 50)
    }

    /// Sessions follow a fixed cycle 0→1→2→…; after training, the GRU predicts the successor.
    @Test func gru4recLearnsASequentialPattern() {
        var sessions: [[Int32]] = []
        for s in 0..<300 {
            let start = s % 10
            sessions.append((0..<5).map { Int32((start + $0) % 10) })
        }
        var cfg = GRU4Rec.Configuration()
        cfg.hidden = 16
        cfg.epochs = 4
        cfg.negatives = 5
        let model = GRU4Rec(cfg).fit(sessions: sessions, items: 10)
        let result = SessionData.evaluate([[3, 4, 5, 6], [7, 8, 9, 0]], k: 1, itemCount: 10) { model.score(session: $0, into: $1) }
        #expect(result.hitRate == 1, "HitRate@1 \(result.hitRate)")
        let same = GRU4Rec(cfg).fit(sessions: sessions, items: 10)
        #expect(same.parameters == model.parameters, "deterministic for a seed")
    }

    @Test func sessionKNNScoresItemsOfSimilarSessions() {
        let model = SessionKNN(sessions: [[0, 1, 2], [0, 1, 3], [4, 5, 6], [1, 2]], items: 7)
        var scores = [Float](repeating: 0, count: 7)
        scores.withUnsafeMutableBufferPointer { model.score(session: [0, 1], into: $0) }
        #expect(scores[2] > scores[3], "item 2 is in two similar sessions, item 3 in one")
        #expect(scores[3] > 0)
        #expect(scores[4] == 0 && scores[5] == 0, "no similar session holds them")
    }

    @Test func sessionsAreCutAtGapsAndMetricsMatchAHandCase() {
        let rows = [
            Interaction(user: 0, item: 1, time: 0), Interaction(user: 0, item: 2, time: 60), Interaction(user: 0, item: 3, time: 10_000),
            Interaction(user: 0, item: 4, time: 10_030), Interaction(user: 1, item: 5, time: 5),
        ]
        #expect(SessionData.sessions(from: rows, gap: 1800).map(\.items) == [[1, 2], [3, 4]])
        // Scorer ranks items by id descending: for prefix [1] target 2 → rank 4 of {6,5,4,3,2,0} minus seen.
        let r = SessionData.evaluate([[1, 2], [5, 6]], k: 5, itemCount: 7) { _, out in for i in 0..<7 { out[i] = Float(i) } }
        // Case 1: candidates 6,5,4,3,2 → target 2 at rank 5 → RR 0.2; case 2: prefix [5], target 6 at rank 1.
        #expect(r.hitRate == 1)
        #expect(abs(r.mrr - (0.2 + 1) / 2) < 1e-12)
    }
}
