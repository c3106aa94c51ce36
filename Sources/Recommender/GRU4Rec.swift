import Foundation

/// A session-based recommender in the manner of GRU4Rec (Hidasi et al. 2016, 2018): item embeddings feed a
/// GRU over the session's items; the hidden state scores every item through output embeddings. Trained by
/// SGD with Adagrad on the BPR-max loss with sampled negatives; back-propagation is written by hand and goes
/// one step back in time, as in GRU4Rec (the previous hidden state is a constant of each step).
public struct GRU4Rec: Sendable {
    public struct Configuration: Sendable {
        public var hidden = 64
        public var epochs = 5
        public var learningRate: Float = 0.05
        public var negatives = 64
        /// Weight of BPR-max's score regularization.
        public var scoreRegularization: Float = 1
        public var seed: UInt64 = 42
        public init() {}
    }

    /// All trainable weights, flat: row-major matrices.
    public struct Parameters: Sendable, Equatable {
        public let items: Int
        public let hidden: Int
        public var embedding: [Float]  // items × H
        public var wz: [Float], wr: [Float], wh: [Float]  // H × H (input)
        public var uz: [Float], ur: [Float], uh: [Float]  // H × H (recurrent)
        public var bz: [Float], br: [Float], bh: [Float]  // H
        public var output: [Float]  // items × H
        public var outputBias: [Float]  // items

        public init(items: Int, hidden: Int, seed: UInt64) {
            self.items = items
            self.hidden = hidden
            var rng = SeededGenerator(seed: seed)
            func uniform(_ count: Int, fanIn: Int, fanOut: Int) -> [Float] {
                let limit = (6 / Float(fanIn + fanOut)).squareRoot()
                return (0..<count).map { _ in (rng.nextFloat() * 2 - 1) * limit }
            }
            embedding = uniform(items * hidden, fanIn: items, fanOut: hidden)
            wz = uniform(hidden * hidden, fanIn: hidden, fanOut: hidden)
            wr = uniform(hidden * hidden, fanIn: hidden, fanOut: hidden)
            wh = uniform(hidden * hidden, fanIn: hidden, fanOut: hidden)
            uz = uniform(hidden * hidden, fanIn: hidden, fanOut: hidden)
            ur = uniform(hidden * hidden, fanIn: hidden, fanOut: hidden)
            uh = uniform(hidden * hidden, fanIn: hidden, fanOut: hidden)
            bz = [Float](repeating: 0, count: hidden)
            br = [Float](repeating: 0, count: hidden)
            bh = [Float](repeating: 0, count: hidden)
            output = uniform(items * hidden, fanIn: hidden, fanOut: items)
            outputBias = [Float](repeating: 0, count: items)
        }

        /// Every array with its name, for optimizers and gradient checks.
        public static let arrayNames = ["embedding", "wz", "wr", "wh", "uz", "ur", "uh", "bz", "br", "bh", "output", "outputBias"]

        public subscript(array name: String) -> [Float] {
            get {
                switch name {
                case "embedding": return embedding
                case "wz": return wz
                case "wr": return wr
                case "wh": return wh
                case "uz": return uz
                case "ur": return ur
                case "uh": return uh
                case "bz": return bz
                case "br": return br
                case "bh": return bh
                case "output": return output
                default: return outputBias
                }
            }
            set {
                switch name {
                case "embedding": embedding = newValue
                case "wz": wz = newValue
                case "wr": wr = newValue
                case "wh": wh = newValue
                case "uz": uz = newValue
                case "ur": ur = newValue
                case "uh": uh = newValue
                case "bz": bz = newValue
                case "br": br = newValue
                case "bh": bh = newValue
                case "output": output = newValue
                default: outputBias = newValue
                }
            }
        }
    }

    /// What one step remembers for its backward pass.
    struct Step {
        var x: [Float], h: [Float], z: [Float], r: [Float], c: [Float], next: [Float]
    }

    public let configuration: Configuration
    public init(_ configuration: Configuration = Configuration()) { self.configuration = configuration }

    // MARK: - Forward

    /// y = M v (M is H × H row-major).
    static func matvec(_ m: [Float], _ v: [Float], _ h: Int) -> [Float] {
        m.withUnsafeBufferPointer { mp in
            v.withUnsafeBufferPointer { vp in (0..<h).map { Vec.dot(mp.baseAddress! + $0 * h, vp.baseAddress!, h) } }
        }
    }

    /// y = Mᵀ v.
    static func matvecT(_ m: [Float], _ v: [Float], _ h: Int) -> [Float] {
        var out = [Float](repeating: 0, count: h)
        m.withUnsafeBufferPointer { mp in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<h where v[i] != 0 { Vec.axpy(v[i], mp.baseAddress! + i * h, o.baseAddress!, h) }
            }
        }
        return out
    }

    static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

    static func step(_ p: Parameters, item: Int, h: [Float]) -> Step {
        let H = p.hidden
        let x = Array(p.embedding[(item * H)..<((item + 1) * H)])
        let wzx = matvec(p.wz, x, H), uzh = matvec(p.uz, h, H)
        let wrx = matvec(p.wr, x, H), urh = matvec(p.ur, h, H)
        let z = (0..<H).map { sigmoid(wzx[$0] + uzh[$0] + p.bz[$0]) }
        let r = (0..<H).map { sigmoid(wrx[$0] + urh[$0] + p.br[$0]) }
        let rh = (0..<H).map { r[$0] * h[$0] }
        let whx = matvec(p.wh, x, H), uhrh = matvec(p.uh, rh, H)
        let c = (0..<H).map { tanh(whx[$0] + uhrh[$0] + p.bh[$0]) }
        let next = (0..<H).map { (1 - z[$0]) * h[$0] + z[$0] * c[$0] }
        return Step(x: x, h: h, z: z, r: r, c: c, next: next)
    }

    static func score(_ p: Parameters, item: Int, h: [Float]) -> Float {
        p.output.withUnsafeBufferPointer { o in h.withUnsafeBufferPointer { Vec.dot(o.baseAddress! + item * p.hidden, $0.baseAddress!, p.hidden) } }
            + p.outputBias[item]
    }

    /// BPR-max loss of one step and its gradient with respect to each score (target first, then negatives).
    static func bprMax(target: Float, negatives: [Float], regularization λ: Float) -> (loss: Double, gradient: [Float]) {
        let m = negatives.count
        let top = negatives.max() ?? 0
        let e = negatives.map { Double(exp($0 - top)) }
        let sum = e.reduce(0, +)
        let w = e.map { $0 / sum }
        let q = negatives.map { Double(sigmoid(target - $0)) }
        let S = max(zip(w, q).reduce(0) { $0 + $1.0 * $1.1 }, 1e-24)
        let R = zip(w, negatives).reduce(0) { $0 + $1.0 * Double($1.1) * Double($1.1) }
        let loss = -log(S) + Double(λ) * R
        var gradient = [Float](repeating: 0, count: m + 1)
        gradient[0] = Float(-(1 / S) * zip(w, q).reduce(0) { $0 + $1.0 * $1.1 * (1 - $1.1) })
        for k in 0..<m {
            let s = Double(negatives[k])
            let d1 = -(1 / S) * (w[k] * (q[k] - S) - w[k] * q[k] * (1 - q[k]))
            let d2 = Double(λ) * (w[k] * s * s - w[k] * R + 2 * w[k] * s)
            gradient[k + 1] = Float(d1 + d2)
        }
        return (loss, gradient)
    }

    /// The gradient of one step: dense for the GRU, one embedding row, and the output rows of the candidates.
    public struct Gradient: Sendable {
        public var wz: [Float], wr: [Float], wh: [Float], uz: [Float], ur: [Float], uh: [Float]
        public var bz: [Float], br: [Float], bh: [Float]
        public var item: Int
        public var embeddingRow: [Float]
        public var outputRows: [Int: [Float]]
        public var outputBias: [Int: Float]

        init(hidden H: Int, item: Int) {
            wz = [Float](repeating: 0, count: H * H); wr = wz; wh = wz; uz = wz; ur = wz; uh = wz
            bz = [Float](repeating: 0, count: H); br = bz; bh = bz
            self.item = item
            embeddingRow = bz
            outputRows = [:]
            outputBias = [:]
        }

        /// The same gradient laid out like `Parameters` (for checks against numerical gradients).
        public func dense(like p: Parameters) -> Parameters {
            var d = p
            for name in Parameters.arrayNames { d[array: name] = [Float](repeating: 0, count: p[array: name].count) }
            d.wz = wz; d.wr = wr; d.wh = wh; d.uz = uz; d.ur = ur; d.uh = uh; d.bz = bz; d.br = br; d.bh = bh
            let H = p.hidden
            for a in 0..<H { d.embedding[item * H + a] = embeddingRow[a] }
            for (j, row) in outputRows { for a in 0..<H { d.output[j * H + a] = row[a] } }
            for (j, b) in outputBias { d.outputBias[j] = b }
            return d
        }
    }

    /// The loss of one step and its gradient.
    public static func lossAndGradient(
        _ p: Parameters, item: Int, h: [Float], target: Int, negatives: [Int], regularization: Float
    )
        -> (loss: Double, gradient: Gradient, next: [Float])
    {
        let H = p.hidden
        let s = step(p, item: item, h: h)
        let candidates = [target] + negatives
        let scores = candidates.map { score(p, item: $0, h: s.next) }
        let (loss, dScores) = bprMax(target: scores[0], negatives: Array(scores.dropFirst()), regularization: regularization)
        var g = Gradient(hidden: H, item: item)
        var gh = [Float](repeating: 0, count: H)
        for (k, j) in candidates.enumerated() {
            let d = dScores[k]
            var row = g.outputRows[j] ?? [Float](repeating: 0, count: H)
            for a in 0..<H {
                gh[a] += d * p.output[j * H + a]
                row[a] += d * s.next[a]
            }
            g.outputRows[j] = row
            g.outputBias[j, default: 0] += d
        }
        backward(p, s, gh, into: &g)
        return (loss, g, s.next)
    }

    /// Back-propagates ∂L/∂h′ through one GRU step (h is a constant) into `g`.
    static func backward(_ p: Parameters, _ s: Step, _ gh: [Float], into g: inout Gradient) {
        let H = p.hidden
        var gah = [Float](repeating: 0, count: H), gaz = [Float](repeating: 0, count: H)
        for a in 0..<H {
            gah[a] = gh[a] * s.z[a] * (1 - s.c[a] * s.c[a])
            gaz[a] = gh[a] * (s.c[a] - s.h[a]) * s.z[a] * (1 - s.z[a])
        }
        let grh = matvecT(p.uh, gah, H)
        let gar = (0..<H).map { grh[$0] * s.h[$0] * s.r[$0] * (1 - s.r[$0]) }
        let rh = (0..<H).map { s.r[$0] * s.h[$0] }
        // Outer products, one row at a time with the SIMD kernel.
        func outer(_ m: inout [Float], _ column: [Float], _ row: [Float]) {
            m.withUnsafeMutableBufferPointer { mp in
                row.withUnsafeBufferPointer { rp in
                    for a in 0..<H where column[a] != 0 { Vec.axpy(column[a], rp.baseAddress!, mp.baseAddress! + a * H, H) }
                }
            }
        }
        outer(&g.wz, gaz, s.x); outer(&g.wr, gar, s.x); outer(&g.wh, gah, s.x)
        outer(&g.uz, gaz, s.h); outer(&g.ur, gar, s.h); outer(&g.uh, gah, rh)
        for a in 0..<H {
            g.bz[a] += gaz[a]
            g.br[a] += gar[a]
            g.bh[a] += gah[a]
        }
        let gx1 = matvecT(p.wz, gaz, H), gx2 = matvecT(p.wr, gar, H), gx3 = matvecT(p.wh, gah, H)
        for a in 0..<H { g.embeddingRow[a] += gx1[a] + gx2[a] + gx3[a] }
    }

    // MARK: - Training

    /// Trains on sessions of item indices (each at least two items long). Deterministic for a seed.
    public func fit(sessions: [[Int32]], items: Int) -> GRU4RecModel {
        let cfg = configuration
        let H = cfg.hidden
        var p = Parameters(items: items, hidden: H, seed: cfg.seed)
        var rng = SeededGenerator(seed: cfg.seed &+ 1)
        // Negatives are drawn by popularity^0.75, as word2vec and GRU4Rec do.
        var counts = [Double](repeating: 0, count: items)
        for session in sessions { for i in session { counts[Int(i)] += 1 } }
        var cumulative = [Double](repeating: 0, count: items)
        var total = 0.0
        for i in 0..<items {
            total += pow(counts[i], 0.75) + 1e-9
            cumulative[i] = total
        }
        func sample() -> Int {
            let u = Double(rng.nextFloat()) * total
            var lo = 0, hi = items - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cumulative[mid] < u { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
        var accumulators = p
        for name in Parameters.arrayNames { accumulators[array: name] = [Float](repeating: 1e-6, count: p[array: name].count) }
        var order = Array(sessions.indices).filter { sessions[$0].count >= 2 }
        for _ in 0..<cfg.epochs {
            for k in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(k, Int(rng.next() % UInt64(k + 1))) }
            for s in order {
                let session = sessions[s]
                var h = [Float](repeating: 0, count: H)
                for t in 0..<(session.count - 1) {
                    let target = Int(session[t + 1])
                    var negatives: [Int] = []
                    negatives.reserveCapacity(cfg.negatives)
                    while negatives.count < cfg.negatives {
                        let j = sample()
                        if j != target { negatives.append(j) }
                    }
                    let (_, g, next) = Self.lossAndGradient(
                        p, item: Int(session[t]), h: h, target: target, negatives: negatives,
                        regularization: cfg.scoreRegularization)
                    Self.adagrad(&p, g, &accumulators, lr: cfg.learningRate)
                    h = next
                }
            }
        }
        return GRU4RecModel(parameters: p)
    }

    static func adagrad(_ p: inout Parameters, _ g: Gradient, _ acc: inout Parameters, lr: Float) {
        let H = p.hidden
        func update(_ values: inout [Float], _ sums: inout [Float], _ grads: [Float], at offset: Int) {
            for i in 0..<grads.count where grads[i] != 0 {
                sums[offset + i] += grads[i] * grads[i]
                values[offset + i] -= lr * grads[i] / sums[offset + i].squareRoot()
            }
        }
        update(&p.wz, &acc.wz, g.wz, at: 0); update(&p.wr, &acc.wr, g.wr, at: 0); update(&p.wh, &acc.wh, g.wh, at: 0)
        update(&p.uz, &acc.uz, g.uz, at: 0); update(&p.ur, &acc.ur, g.ur, at: 0); update(&p.uh, &acc.uh, g.uh, at: 0)
        update(&p.bz, &acc.bz, g.bz, at: 0); update(&p.br, &acc.br, g.br, at: 0); update(&p.bh, &acc.bh, g.bh, at: 0)
        update(&p.embedding, &acc.embedding, g.embeddingRow, at: g.item * H)
        for (j, row) in g.outputRows { update(&p.output, &acc.output, row, at: j * H) }
        for (j, b) in g.outputBias { update(&p.outputBias, &acc.outputBias, [b], at: j) }
    }
}

/// A trained GRU4Rec: runs the GRU over a session and scores every item.
public struct GRU4RecModel: Sendable {
    public let parameters: GRU4Rec.Parameters
    public var itemCount: Int { parameters.items }

    /// Scores of every item as the next one after `session`.
    public func score(session: [Int32], into out: UnsafeMutableBufferPointer<Float>) {
        let H = parameters.hidden
        var h = [Float](repeating: 0, count: H)
        for item in session where Int(item) < parameters.items { h = GRU4Rec.step(parameters, item: Int(item), h: h).next }
        parameters.output.withUnsafeBufferPointer { o in
            h.withUnsafeBufferPointer { hp in
                for j in 0..<parameters.items { out[j] = Vec.dot(o.baseAddress! + j * H, hp.baseAddress!, H) + parameters.outputBias[j] }
            }
        }
    }
}
