import Foundation
import Recommender
import Testing
@testable import Gateway
@testable import VeilCore
@testable import Serving

@Suite struct SessionBlendTests {
    /// Long-term taste says shoes (items 0-9); sessions walk a fixed path through headphones (10-19). The weight
    /// chosen on held-out sessions favours the session model, and a session then steers the list.
    @Test func theSessionWeightIsChosenOnHeldOutSessionsAndSteersTheList() {
        var rows: [RatingRow] = []
        for u in 0..<60 {
            for j in 0..<5 { rows.append(RatingRow(user: "u\(u)", item: "i\((u + j) % 10)", rating: 1, timestamp: 1000 + Int64(j))) }
            for s in 0..<3 {
                let start = Int64(100_000 + s * 10_000 + u * 100)
                let first = (u + s) % 10
                for step in 0..<4 {
                    rows.append(RatingRow(user: "u\(u)", item: "i\(10 + (first + step) % 10)", rating: 1, timestamp: start + Int64(step) * 60))
                }
            }
        }
        let split = EvaluationSplit(train: rows, test: [], catalog: (0..<20).map { (id: "i\($0)", content: nil) })
        let sessions = SessionData.sessions(from: split.train, gap: ServingModel.sessionGap)
        let weight = ServingModel.chooseSessionWeight(split, sessions: sessions)
        let model = SessionKNN(sessions: sessions.map(\.items), items: 20)
        #expect(weight > 0, "sessions are predictive here")
        var scores = [Float](repeating: 0, count: 20)
        let index = Dictionary(uniqueKeysWithValues: split.items.enumerated().map { ($1, Int32($0)) })
        scores.withUnsafeMutableBufferPointer { model.score(session: [index["i13"]!, index["i14"]!], into: $0) }
        let best = scores.indices.filter { ![index["i13"]!, index["i14"]!].contains(Int32($0)) }.max { scores[$0] < scores[$1] }!
        #expect(split.items[best] == "i15")
    }
}
