import Foundation

/// Proportions and their comparison, for experiment reports and canary decisions.
public enum Proportions {
    /// 95% Wilson score interval of `successes` out of `trials` (well-behaved near 0 and 1, unlike the normal one).
    public static func wilson(successes: Int, trials: Int, z: Double = 1.959964) -> ClosedRange<Double> {
        guard trials > 0 else { return 0...1 }
        let n = Double(trials), p = Double(successes) / n
        let denominator = 1 + z * z / n
        let centre = (p + z * z / (2 * n)) / denominator
        let half = z * (p * (1 - p) / n + z * z / (4 * n * n)).squareRoot() / denominator
        return max(0, centre - half)...min(1, centre + half)
    }

    /// Two-proportion z-test with the pooled standard error: the z statistic (b − a) and its two-sided p-value.
    public static func zTest(successesA: Int, trialsA: Int, successesB: Int, trialsB: Int) -> (z: Double, p: Double) {
        guard trialsA > 0, trialsB > 0 else { return (0, 1) }
        let pa = Double(successesA) / Double(trialsA), pb = Double(successesB) / Double(trialsB)
        let pooled = Double(successesA + successesB) / Double(trialsA + trialsB)
        let se = (pooled * (1 - pooled) * (1 / Double(trialsA) + 1 / Double(trialsB))).squareRoot()
        guard se > 0 else { return (0, 1) }
        let z = (pb - pa) / se
        return (z, erfc(abs(z) / 2.0.squareRoot()))
    }
}

/// Disjoint LinUCB (Li et al. 2010): one ridge regression per arm over a context vector; each round plays the arm
/// with the highest upper confidence bound θₐᵀx + α·√(xᵀAₐ⁻¹x). Pure state, deterministic; Codable so that a
/// learnt bandit survives a restart.
public struct LinUCB: Sendable, Equatable, Codable {
    public let arms: Int
    public let dimension: Int
    public let alpha: Double
    /// Per arm: A⁻¹ (d × d, kept by Sherman–Morrison updates) and b.
    var inverse: [[Double]]
    var b: [[Double]]
    public private(set) var pulls: [Int]

    public init(arms: Int, dimension: Int, alpha: Double = 1) {
        precondition(arms >= 1 && dimension >= 1)
        self.arms = arms
        self.dimension = dimension
        self.alpha = alpha
        let identity = (0..<dimension * dimension).map { $0 % (dimension + 1) == 0 ? 1.0 : 0 }
        inverse = [[Double]](repeating: identity, count: arms)
        b = [[Double]](repeating: [Double](repeating: 0, count: dimension), count: arms)
        pulls = [Int](repeating: 0, count: arms)
    }

    /// Whether this (decoded) bandit has `other`'s arms, dimension and α, and state of the right shape, all finite.
    public func fits(_ other: LinUCB) -> Bool {
        arms == other.arms && dimension == other.dimension && alpha == other.alpha
            && inverse.count == arms && b.count == arms && pulls.count == arms && pulls.allSatisfy { $0 >= 0 }
            && inverse.allSatisfy { $0.count == dimension * dimension && $0.allSatisfy(\.isFinite) }
            && b.allSatisfy { $0.count == dimension && $0.allSatisfy(\.isFinite) }
    }

    func multiply(_ m: [Double], _ x: [Double]) -> [Double] {
        (0..<dimension).map { i in (0..<dimension).reduce(0) { $0 + m[i * dimension + $1] * x[$1] } }
    }

    /// Estimated reward and confidence width of every arm for `context`.
    public func estimates(_ context: [Double]) -> [(mean: Double, width: Double)] {
        precondition(context.count == dimension)
        return (0..<arms).map { a in
            let ax = multiply(inverse[a], context)
            let theta = multiply(inverse[a], b[a])
            let mean = zip(theta, context).reduce(0) { $0 + $1.0 * $1.1 }
            let variance = max(zip(context, ax).reduce(0) { $0 + $1.0 * $1.1 }, 0)
            return (mean, alpha * variance.squareRoot())
        }
    }

    /// The arm to play (lowest index on ties).
    public func choose(_ context: [Double]) -> Int {
        let e = estimates(context)
        var best = 0
        for a in 1..<arms where e[a].mean + e[a].width > e[best].mean + e[best].width + 1e-12 { best = a }
        return best
    }

    /// Learns the reward observed after playing `arm` in `context`.
    public mutating func update(arm: Int, context x: [Double], reward: Double) {
        observe(arm: arm, context: x)
        self.reward(arm: arm, context: x, reward: reward)
    }

    /// Records that `arm` was played in `context` (its confidence narrows). With delayed feedback, call this at
    /// once and `reward` when (if) a reward arrives: no reward means 0.
    public mutating func observe(arm: Int, context x: [Double]) {
        let ax = multiply(inverse[arm], x)
        let denominator = 1 + zip(x, ax).reduce(0) { $0 + $1.0 * $1.1 }
        for i in 0..<dimension { for j in 0..<dimension { inverse[arm][i * dimension + j] -= ax[i] * ax[j] / denominator } }
        pulls[arm] += 1
    }

    public mutating func reward(arm: Int, context x: [Double], reward: Double) {
        for i in 0..<dimension { b[arm][i] += reward * x[i] }
    }
}
