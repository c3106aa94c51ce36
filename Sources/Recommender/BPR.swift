import Foundation

/// Bayesian personalized ranking (Rendle et al. 2009) by stochastic gradient descent: for sampled triples
/// (user, seen item, unseen item) it raises the seen item's score above the unseen one's.
///
/// Single-threaded on purpose: the result is then identical for a seed on any machine.
public struct BPR: Sendable {
    public struct Configuration: Sendable {
        public var factors = 64
        public var learningRate: Float = 0.01
        public var regularization: Float = 0.01
        public var iterations = 100
        public var seed: UInt64 = 42
        public init() {}
    }

    public var configuration: Configuration
    public init(_ configuration: Configuration = .init()) { self.configuration = configuration }

    public func fit(_ userItems: SparseMatrix) -> ALSModel {
        let f = configuration.factors
        let users = userItems.rows, items = userItems.columns
        var rng = SeededGenerator(seed: configuration.seed)
        var x = (0..<(users * f)).map { _ in (rng.nextFloat() - 0.5) * 0.1 }
        var y = (0..<(items * f)).map { _ in (rng.nextFloat() - 0.5) * 0.1 }
        // Users with at least one interaction, and a sample budget of one triple per interaction per epoch.
        let active = (0..<users).filter { userItems.offsets[$0 + 1] > userItems.offsets[$0] }
        guard !active.isEmpty, items > 1 else {
            return ALSModel(factors: f, userFactors: x, itemFactors: y, configuration: ALS.Configuration())
        }
        let lr = configuration.learningRate, reg = configuration.regularization
        var scratch = [Float](repeating: 0, count: f)
        x.withUnsafeMutableBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                scratch.withUnsafeMutableBufferPointer { sp in
                    for _ in 0..<configuration.iterations {
                        for _ in 0..<userItems.nonZeroCount {
                            let u = active[Int(rng.next() % UInt64(active.count))]
                            let lo = userItems.offsets[u], hi = userItems.offsets[u + 1]
                            let i = Int(userItems.indices[lo + Int(rng.next() % UInt64(hi - lo))])
                            var j = Int(rng.next() % UInt64(items))
                            // Resample a few times if j was seen (rows are sorted: binary search).
                            var tries = 0
                            while tries < 5, userItems.indices[lo..<hi].contains(Int32(j)) {
                                j = Int(rng.next() % UInt64(items))
                                tries += 1
                            }
                            let xu = xp.baseAddress! + u * f, yi = yp.baseAddress! + i * f, yj = yp.baseAddress! + j * f
                            let diff = Vec.dot(xu, yi, f) - Vec.dot(xu, yj, f)
                            let g = 1 / (1 + expf(diff))
                            for k in 0..<f {
                                let xuk = xu[k]
                                sp[k] = yi[k] - yj[k]
                                xu[k] += lr * (g * sp[k] - reg * xuk)
                                yi[k] += lr * (g * xuk - reg * yi[k])
                                yj[k] += lr * (-g * xuk - reg * yj[k])
                            }
                        }
                    }
                }
            }
        }
        var cfg = ALS.Configuration()
        cfg.factors = f
        return ALSModel(name: "bpr", factors: f, userFactors: x, itemFactors: y, configuration: cfg)
    }
}
