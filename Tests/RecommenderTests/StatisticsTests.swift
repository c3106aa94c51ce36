import Foundation
import Testing
@testable import Recommender

@Suite struct StatisticsTests {
    /// Hand-computed: 200/1000 vs 250/1000, pooled p = 0.225, SE = 0.018675, z = 2.6774, p = 0.00742.
    @Test func zTestMatchesAHandComputedCase() {
        let t = Proportions.zTest(successesA: 200, trialsA: 1000, successesB: 250, trialsB: 1000)
        #expect(abs(t.z - 2.677398) < 1e-5)
        #expect(abs(t.p - 0.0074196) < 1e-6)
        let same = Proportions.zTest(successesA: 50, trialsA: 500, successesB: 50, trialsB: 500)
        #expect(same.z == 0 && same.p == 1)
        #expect(Proportions.zTest(successesA: 0, trialsA: 0, successesB: 1, trialsB: 2).p == 1)
    }

    /// Hand-computed Wilson interval of 20/100: [0.13337, 0.28883].
    @Test func wilsonIntervalMatchesAHandComputedCase() {
        let ci = Proportions.wilson(successes: 20, trials: 100)
        #expect(abs(ci.lowerBound - 0.133367) < 1e-5)
        #expect(abs(ci.upperBound - 0.288829) < 1e-5)
        #expect(Proportions.wilson(successes: 0, trials: 10).lowerBound == 0)
    }

    /// A known linear reward model where the best boost depends on the context. LinUCB's regret grows
    /// sublinearly, and it earns more than any fixed boost.
    @Test func linUCBRegretIsSublinearAndBeatsEveryFixedBoost() {
        // Context: [1, bargain segment, mobile, weekend]. Arms: boost levels 0, 0.25, 0.5, 0.75, 1.
        let theta: [[Double]] = [
            [0.30, -0.10, 0.00, 0.00], [0.32, 0.00, 0.02, 0.02], [0.30, 0.10, 0.05, 0.05], [0.25, 0.22, 0.02, 0.08], [0.15, 0.35, -0.05, 0.10],
        ]
        func reward(_ arm: Int, _ x: [Double]) -> Double { zip(theta[arm], x).reduce(0) { $0 + $1.0 * $1.1 } }
        var rng = SeededGenerator(seed: 11)
        var bandit = LinUCB(arms: 5, dimension: 4, alpha: 0.5)
        var regret: [Double] = [0]
        var earned = 0.0
        var fixed = [Double](repeating: 0, count: 5)
        for _ in 0..<6000 {
            let x: [Double] = [1, rng.nextFloat() < 0.4 ? 1 : 0, rng.nextFloat() < 0.6 ? 1 : 0, rng.nextFloat() < 0.3 ? 1 : 0]
            let arm = bandit.choose(x)
            let expected = (0..<5).map { reward($0, x) }
            for a in 0..<5 { fixed[a] += expected[a] }
            earned += expected[arm]
            regret.append(regret.last! + expected.max()! - expected[arm])
            bandit.update(arm: arm, context: x, reward: Double(rng.nextFloat()) < expected[arm] ? 1 : 0)
        }
        // Regret in the second half is well under that of the first half.
        let firstHalf = regret[3000] - regret[0], secondHalf = regret[6000] - regret[3000]
        #expect(secondHalf < 0.6 * firstHalf, "first \(firstHalf), second \(secondHalf)")
        #expect(earned > fixed.max()!, "bandit \(earned) vs best fixed boost \(fixed.max()!)")
        #expect(bandit.pulls.filter { $0 > 100 }.count >= 2, "it uses different boosts for different contexts")
    }

    /// A saved bandit decodes to the same state and choices; one of another shape or with non-finite state is
    /// told apart before it is used.
    @Test func linUCBRoundTripsThroughJSONAndRefusesStateOfAnotherShape() throws {
        var bandit = LinUCB(arms: 3, dimension: 2, alpha: 0.5)
        for i in 0..<30 { bandit.update(arm: i % 3, context: [1, Double(i % 2)], reward: i % 4 == 0 ? 1 : 0) }
        let decoded = try JSONDecoder().decode(LinUCB.self, from: JSONEncoder().encode(bandit))
        #expect(decoded == bandit)
        #expect(decoded.fits(LinUCB(arms: 3, dimension: 2, alpha: 0.5)))
        #expect(decoded.choose([1, 0]) == bandit.choose([1, 0]) && decoded.choose([1, 1]) == bandit.choose([1, 1]))
        #expect(!decoded.fits(LinUCB(arms: 4, dimension: 2, alpha: 0.5)))
        #expect(!decoded.fits(LinUCB(arms: 3, dimension: 3, alpha: 0.5)))
        #expect(!decoded.fits(LinUCB(arms: 3, dimension: 2, alpha: 1)))
        var json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(bandit)) as? [String: Any])
        json["b"] = [[1.0, 2.0], [0.0]]
        let ragged = try JSONDecoder().decode(LinUCB.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(!ragged.fits(bandit))
    }
}
