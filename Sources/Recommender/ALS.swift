/// Implicit-feedback matrix factorization by alternating least squares (Hu, Koren & Volinsky 2008),
/// each row solved with a few conjugate-gradient steps warm-started from its previous value (Takács et al.).
///
/// Confidence follows `implicit`'s convention: `c_ui = alpha · value`, preference 1 for observed pairs,
/// confidence 1 and preference 0 for all others.
public struct ALS: Sendable {
    public struct Configuration: Sendable {
        public var factors: Int = 64
        public var regularization: Float = 0.05
        public var alpha: Float = 1
        public var iterations: Int = 15
        public var conjugateGradientSteps: Int = 3
        public var seed: UInt64 = 42
        public var threads: Int = 1
        public init() {}
    }

    public var configuration: Configuration
    public init(_ configuration: Configuration = .init()) { self.configuration = configuration }

    /// Trains on a users × items matrix of interaction strengths.
    public func fit(_ userItems: SparseMatrix, progress: ProgressReporter = .silent) -> ALSModel {
        let f = configuration.factors
        var rng = SeededGenerator(seed: configuration.seed)
        var userFactors = (0..<(userItems.rows * f)).map { _ in rng.nextFloat() * 0.01 }
        var itemFactors = (0..<(userItems.columns * f)).map { _ in rng.nextFloat() * 0.01 }
        let confidence = userItems.mapValues { $0 * configuration.alpha }
        let itemUsers = confidence.transposed()
        for iteration in 0..<configuration.iterations {
            ALS.solveRows(confidence, fixed: itemFactors, solved: &userFactors, configuration: configuration)
            ALS.solveRows(itemUsers, fixed: userFactors, solved: &itemFactors, configuration: configuration)
            progress.advance("als", "iterations", done: iteration + 1, total: configuration.iterations)
        }
        return ALSModel(factors: f, userFactors: userFactors, itemFactors: itemFactors, configuration: configuration)
    }

    /// YᵀY + λI for the fixed side.
    static func gram(_ y: [Float], rows: Int, factors f: Int, regularization: Float) -> [Float] {
        var g = [Float](repeating: 0, count: f * f)
        y.withUnsafeBufferPointer { yp in
            g.withUnsafeMutableBufferPointer { gp in
                for r in 0..<rows {
                    let row = yp.baseAddress! + r * f
                    for a in 0..<f where row[a] != 0 {
                        Vec.axpy(row[a], row, gp.baseAddress! + a * f, f)
                    }
                }
            }
        }
        for a in 0..<f { g[a * f + a] += regularization }
        return g
    }

    /// One half-step: every row of `solved` given the `fixed` factors.
    static func solveRows(_ matrix: SparseMatrix, fixed: [Float], solved: inout [Float], configuration: Configuration) {
        let f = configuration.factors
        let yty = gram(fixed, rows: matrix.columns, factors: f, regularization: configuration.regularization)
        let steps = configuration.conjugateGradientSteps
        solved.withShared { xs in
            fixed.withUnsafeBufferPointer { ys in
                yty.withUnsafeBufferPointer { g in
                    let ysBase = UncheckedPointer(ys.baseAddress!), gBase = UncheckedPointer(g.baseAddress!)
                    parallelChunks(count: matrix.rows, threads: configuration.threads) { range in
                        var scratch = [Float](repeating: 0, count: 3 * f)
                        scratch.withUnsafeMutableBufferPointer { s in
                            for u in range {
                                conjugateGradient(
                                    row: u, matrix: matrix, x: xs.base + u * f, y: ysBase.pointer, yty: gBase.pointer,
                                    factors: f, steps: steps, scratch: s.baseAddress!)
                            }
                        }
                    }
                }
            }
        }
    }

    @inline(__always)
    static func conjugateGradient(
        row u: Int, matrix: SparseMatrix, x: UnsafeMutablePointer<Float>, y: UnsafePointer<Float>,
        yty: UnsafePointer<Float>, factors f: Int, steps: Int, scratch: UnsafeMutablePointer<Float>
    ) {
        let r = scratch, p = scratch + f, ap = scratch + 2 * f
        let lo = matrix.offsets[u], hi = matrix.offsets[u + 1]
        matrix.indices.withUnsafeBufferPointer { idx in
            matrix.values.withUnsafeBufferPointer { val in
                // r = Yᵀ Cu p(u) − (YᵀCuY + λI) x
                for a in 0..<f { r[a] = -Vec.dot(yty + a * f, x, f) }
                for k in lo..<hi {
                    let c = val[k]
                    let yi = y + Int(idx[k]) * f
                    let coefficient = c - (c - 1) * Vec.dot(yi, x, f)
                    Vec.axpy(coefficient, yi, r, f)
                }
                for a in 0..<f { p[a] = r[a] }
                var rsOld = Vec.dot(r, r, f)
                if rsOld < 1e-20 { return }
                for _ in 0..<steps {
                    for a in 0..<f { ap[a] = Vec.dot(yty + a * f, p, f) }
                    for k in lo..<hi {
                        let weight = val[k] - 1
                        // With confidence 1 an observed cell weighs like an unobserved one: nothing to add.
                        if weight == 0 { continue }
                        let yi = y + Int(idx[k]) * f
                        Vec.axpy(weight * Vec.dot(yi, p, f), yi, ap, f)
                    }
                    let denominator = Vec.dot(p, ap, f)
                    if denominator <= 0 { return }
                    let step = rsOld / denominator
                    Vec.axpy(step, p, x, f)
                    Vec.axpy(-step, ap, r, f)
                    let rsNew = Vec.dot(r, r, f)
                    if rsNew < 1e-20 { return }
                    let beta = rsNew / rsOld
                    for a in 0..<f { p[a] = r[a] + beta * p[a] }
                    rsOld = rsNew
                }
            }
        }
    }
}

/// A pointer that may cross into concurrently running closures that only read through it.
struct UncheckedPointer<T>: @unchecked Sendable {
    let pointer: UnsafePointer<T>
    init(_ pointer: UnsafePointer<T>) { self.pointer = pointer }
}

/// Trained ALS factors, user-major and item-major, `factors` floats per row.
public struct ALSModel: ScoringModel {
    public let name: String
    public let factors: Int
    public let userFactors: [Float]
    public let itemFactors: [Float]
    public let configuration: ALS.Configuration
    public var itemCount: Int { itemFactors.count / factors }

    public init(name: String = "als", factors: Int, userFactors: [Float], itemFactors: [Float], configuration: ALS.Configuration) {
        self.name = name
        self.factors = factors
        self.userFactors = userFactors
        self.itemFactors = itemFactors
        self.configuration = configuration
    }

    /// A user vector for an unseen user (or a user with new interactions): one exact least-squares solve
    /// against the fixed item factors, without retraining.
    public func foldIn(items: [Int32], weights: [Float]) -> [Float] {
        let f = factors
        let matrix = SparseMatrix(rows: 1, columns: itemCount, entries: zip(items, weights).map { (0, $0.0, $0.1 * configuration.alpha) })
        var x = [Float](repeating: 0, count: f)
        var cfg = configuration
        cfg.threads = 1
        cfg.conjugateGradientSteps = max(f, 8)
        ALS.solveRows(matrix, fixed: itemFactors, solved: &x, configuration: cfg)
        return x
    }

    public func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
        let f = factors
        let vector: [Float]
        if let u = context.user, u < userFactors.count / f {
            vector = Array(userFactors[(u * f)..<((u + 1) * f)])
        } else {
            vector = foldIn(items: context.items, weights: context.weights)
        }
        vector.withUnsafeBufferPointer { v in
            itemFactors.withUnsafeBufferPointer { items in
                for i in 0..<itemCount { out[i] = Vec.dot(items.baseAddress! + i * f, v.baseAddress!, f) }
            }
        }
    }
}

extension ALSModel {
    /// The weighted squared loss ALS minimises, summed densely over all cells (for tests and diagnostics on
    /// small matrices): Σ c_ui (p_ui − x_u·y_i)² + λ(‖X‖² + ‖Y‖²), with c = 1 and p = 0 off the observed cells.
    public func loss(on userItems: SparseMatrix) -> Double {
        let f = factors
        let users = userFactors.count / f
        var total = 0.0
        for u in 0..<users {
            var observed: [Int32: Float] = [:]
            for p in userItems.offsets[u]..<userItems.offsets[u + 1] { observed[userItems.indices[p]] = userItems.values[p] * configuration.alpha }
            for i in 0..<itemCount {
                var prediction: Float = 0
                for a in 0..<f { prediction += userFactors[u * f + a] * itemFactors[i * f + a] }
                let (c, target): (Float, Float) = observed[Int32(i)].map { ($0, 1) } ?? (1, 0)
                total += Double(c * (target - prediction) * (target - prediction))
            }
        }
        let norms = userFactors.reduce(0) { $0 + Double($1 * $1) } + itemFactors.reduce(0) { $0 + Double($1 * $1) }
        return total + Double(configuration.regularization) * norms
    }
}
