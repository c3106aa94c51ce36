import Foundation
import Synchronization

/// Users to remove from a model fitted on `before`, and the same data without them.
public final class UnlearningRequest: Sendable {
    /// Rows of `before` whose contribution must go.
    public let removed: Set<Int>
    public let before: EvaluationSplit
    /// Per row of `after`, its row in `before`.
    public let kept: [Int]
    /// Built on first use: most models only subtract the removed rows and never need it.
    private let remaining = Mutex<EvaluationSplit?>(nil)

    public init(removing removed: Set<Int>, from before: EvaluationSplit) {
        self.removed = removed
        self.before = before
        kept = (0..<before.users.count).filter { !removed.contains($0) }
    }

    /// `before` without the removed users: the others in the same order, re-indexed densely; the same items.
    /// This is the data a model trained from scratch without them would see.
    public var after: EvaluationSplit {
        remaining.withLock { cached in
            if let cached { return cached }
            var newIndex = [Int32](repeating: -1, count: before.users.count)
            for (n, u) in kept.enumerated() { newIndex[u] = Int32(n) }
            let train = before.train.compactMap { x -> Interaction? in
                let u = newIndex[Int(x.user)]
                return u < 0 ? nil : Interaction(user: u, item: x.item, weight: x.weight, time: x.time)
            }
            let split = EvaluationSplit(
                users: kept.map { before.users[$0] }, items: before.items, train: train,
                relevant: kept.map { before.relevant[$0] }, itemContent: before.itemContent)
            cached = split
            return split
        }
    }

    /// A removed user's row of the training matrix (items and summed weights).
    func row(_ u: Int) -> (items: ArraySlice<Int32>, values: ArraySlice<Float>) {
        let m = before.trainMatrix, range = m.offsets[u]..<m.offsets[u + 1]
        return (m.indices[range], m.values[range])
    }
}

/// A model that can forget users without being trained again.
public protocol Unlearnable: ScoringModel {
    /// The model as if the removed users had never been in its training data, or nil when only a refit can remove
    /// them. Hyperparameters stay as they were chosen.
    func unlearning(_ request: UnlearningRequest) -> Self?
    /// True when ``unlearning(_:)`` gives what training without the users gives (up to float rounding); false when
    /// it approximates it (see the model's documentation for how far).
    var unlearnsExactly: Bool { get }
    /// The same scores without what only unlearning needs (item-kNN's co-occurrences, EASE's inverse): for models
    /// that are scored and dropped, like the hybrid's validation fits. Its ``unlearning(_:)`` answers nil.
    var scoringOnly: Self { get }
}

extension Unlearnable {
    public var unlearnsExactly: Bool { true }
    public var scoringOnly: Self { self }
}

extension ItemKNNModel: Unlearnable {
    public var scoringOnly: ItemKNNModel {
        var model = self
        model.cooccurrence = nil
        return model
    }

    /// Cosine: subtracts the users' co-occurrences (and with them the items' norms, the diagonal) and re-ranks the
    /// neighbours of every item whose similarities changed: exact. BM25: nil (its weights depend on every user).
    public func unlearning(_ request: UnlearningRequest) -> ItemKNNModel? {
        guard var cooccurrence else { return nil }
        var changed = [Bool](repeating: false, count: itemCount)
        for u in request.removed.sorted() {
            let row = request.row(u)
            cooccurrence.subtract(items: row.items, values: row.values)
            for i in row.items { changed[Int(i)] = true }
        }
        // A changed item's row is ranked again in full. Any other row holds the same co-occurrences; only its
        // cosines with changed items moved, and only upwards (their norms shrank). So its new neighbours are among
        // its old ones and the changed items it co-occurs with (C is symmetric: row t lists them), offered in column
        // order so that ties break as a full ranking would.
        // When most items changed, ranking every row again is cheaper than gathering candidates.
        let changedCount = changed.reduce(0) { $0 + ($1 ? 1 : 0) }
        if changedCount > itemCount / 8 { for i in 0..<itemCount { changed[i] = true } }
        var candidates = [[Int32]](repeating: [], count: itemCount)
        for t in 0..<itemCount where changed[t] && changedCount <= itemCount / 8 {
            for p in cooccurrence.offsets[t]..<cooccurrence.offsets[t + 1] where !changed[Int(cooccurrence.indices[p])] {
                candidates[Int(cooccurrence.indices[p])].append(Int32(t))
            }
        }
        let rows = (0..<itemCount).map { i -> (indices: [Int32], values: [Float]) in
            if changed[i] { return cooccurrence.neighbours(of: i, keep: neighbours, cosine: true) }
            let range = similarities.offsets[i]..<similarities.offsets[i + 1]
            if candidates[i].isEmpty { return (Array(similarities.indices[range]), Array(similarities.values[range])) }
            let merged = Array(Set(similarities.indices[range]).union(candidates[i])).sorted()
            return cooccurrence.neighbours(of: i, among: merged, keep: neighbours)
        }
        return ItemKNNModel(name: name, similarities: ItemKNN.matrix(rows, items: itemCount), neighbours: neighbours, cooccurrence: cooccurrence)
    }
}

extension EASEModel: Unlearnable {
    public var scoringOnly: EASEModel {
        var model = self
        model.inverse = []
        return model
    }

    /// Removing user x from the Gram matrix G is G − xxᵀ, so by Sherman–Morrison
    /// `P' = P + (Px)(Px)ᵀ / (1 − xᵀPx)`, one O(items²) update per user instead of an O(items³) inversion. Exact.
    public func unlearning(_ request: UnlearningRequest) -> EASEModel? {
        let n = items.count
        // A model kept for scoring only, or decoded from bytes, has no inverse to downdate.
        guard inverse.count == n * n else { return nil }
        // The modeled items were chosen by counts that included the removed subjects: if a fit without them would
        // choose others, only a refit is equal to it.
        if items.count < itemCount, EASE.mostInteracted(request.after.trainMatrix, limit: items.count) != items { return nil }
        var p = inverse
        var px = [Double](repeating: 0, count: n)
        var failed = false
        p.withUnsafeMutableBufferPointer { pp in
            px.withUnsafeMutableBufferPointer { v in
                for u in request.removed.sorted() {
                    let row = request.row(u)
                    // Only the modeled items are in the Gram matrix; the others never entered it.
                    let x = zip(row.items, row.values).compactMap { item, value -> (Int, Double)? in
                        Int(item) < itemCount && position[Int(item)] >= 0 ? (Int(position[Int(item)]), Double(value)) : nil
                    }
                    guard !x.isEmpty else { continue }
                    for i in 0..<n { v[i] = 0 }
                    // P is symmetric: Px is a sum of P's rows.
                    for (k, value) in x { DenseSolver.axpyDouble(value, pp.baseAddress! + k * n, v.baseAddress!, n) }
                    var xpx = 0.0
                    for (k, value) in x { xpx += value * v[k] }
                    // G − xxᵀ still holds λI, so it stays positive definite and 1 − xᵀPx > 0; were rounding to say
                    // otherwise, only a refit can be trusted.
                    guard 1 - xpx > 1e-12 else { failed = true; return }
                    let scale = 1 / (1 - xpx)
                    for i in 0..<n where v[i] != 0 { DenseSolver.axpyDouble(scale * v[i], v.baseAddress!, pp.baseAddress! + i * n, n) }
                }
            }
        }
        return failed ? nil : EASEModel(inverse: p, items: items, itemCount: itemCount)
    }
}

extension ALSModel: Unlearnable {
    /// One half-step: the removed users' factors go, and every item's factors are solved again, exactly, against the
    /// other users' fixed factors and their data alone. Not what a training from scratch gives (that follows another
    /// path from its random start); `UnlearningTests` bound the difference. BPR: nil (no closed-form half-step).
    public func unlearning(_ request: UnlearningRequest) -> ALSModel? {
        guard name == "als" else { return nil }
        let f = factors
        var users = [Float](repeating: 0, count: request.kept.count * f)
        for (n, u) in request.kept.enumerated() {
            for a in 0..<f { users[n * f + a] = userFactors[u * f + a] }
        }
        var items = itemFactors
        var cfg = configuration
        cfg.conjugateGradientSteps = max(f, 8)
        let itemUsers = request.after.trainMatrix.mapValues { $0 * configuration.alpha }.transposed()
        ALS.solveRows(itemUsers, fixed: users, solved: &items, configuration: cfg)
        return ALSModel(name: name, factors: f, userFactors: users, itemFactors: items, configuration: configuration)
    }

    public var unlearnsExactly: Bool { false }
}

extension PopularityModel: Unlearnable {
    /// Each removed user's items lose one count (counts are distinct users per item). Exact.
    public func unlearning(_ request: UnlearningRequest) -> PopularityModel? {
        var counts = self.counts
        for u in request.removed {
            for i in request.row(u).items { counts[Int(i)] -= 1 }
        }
        return PopularityModel(counts: counts)
    }
}

extension TrendingModel: Unlearnable {
    /// The removed users' events leave the time line; scores fixed for serving are recomputed. Exact.
    public func unlearning(_ request: UnlearningRequest) -> TrendingModel? {
        var gone: [Pair: Int] = [:]
        for x in request.before.train where request.removed.contains(Int(x.user)) { gone[Pair(time: x.time, item: x.item), default: 0] += 1 }
        var times: [Int64] = [], items: [Int32] = []
        times.reserveCapacity(self.times.count)
        items.reserveCapacity(self.items.count)
        for (t, i) in zip(self.times, self.items) {
            let key = Pair(time: t, item: i)
            if let n = gone[key], n > 0 {
                gone[key] = n - 1
                continue
            }
            times.append(t)
            items.append(i)
        }
        let base = TrendingModel(itemCount: itemCount, sortedTimes: times, items: items, halfLife: halfLife)
        return precomputed.map { base.precomputing(at: $0.time) } ?? base
    }

    private struct Pair: Hashable {
        let time: Int64
        let item: Int32
    }
}

extension ContentModel: Unlearnable {
    /// Item metadata only: no user to forget.
    public func unlearning(_ request: UnlearningRequest) -> ContentModel? { self }
}

extension ZeroModel: Unlearnable {
    func unlearning(_ request: UnlearningRequest) -> ZeroModel? { self }
}

extension HybridModel: Unlearnable {
    /// Every component unlearned with the blend weights kept; nil when a component can only be refitted.
    public func unlearning(_ request: UnlearningRequest) -> HybridModel? { unlearning(request, refitting: nil) }

    /// Every component unlearned with the blend weights kept. With `refit`, a component that cannot be unlearned
    /// exactly (or whose exact unlearning gives up) is refitted by it instead, on `request.after`; without, each is
    /// unlearned as well as it can be, and one that cannot be unlearned at all makes the result nil.
    public func unlearning(_ request: UnlearningRequest, refitting refit: ((any ScoringModel) -> (any ScoringModel)?)?) -> HybridModel? {
        var unlearned: [any ScoringModel] = []
        for component in components {
            let model = component as? any Unlearnable
            if let exact = model, refit == nil || exact.unlearnsExactly, let done = exact.unlearning(request) {
                unlearned.append(done)
            } else if let refit, let refitted = refit(component) {
                unlearned.append(refitted)
            } else {
                return nil
            }
        }
        return replacing(components: unlearned)
    }

    /// Exact when every component with a weight is.
    public var unlearnsExactly: Bool {
        zip(components, weights).allSatisfy { model, weight in weight == 0 || (model as? any Unlearnable)?.unlearnsExactly == true }
    }
}

extension ALSModel {
    /// The same model with these users' factors zeroed: what it holds about them alone, gone at once (scores for
    /// anyone else fold in from item factors and are unchanged).
    public func zeroingUsers(_ users: Set<Int>) -> ALSModel {
        var factorsOfUsers = userFactors
        for u in users where u < factorsOfUsers.count / factors {
            for a in 0..<factors { factorsOfUsers[u * factors + a] = 0 }
        }
        return ALSModel(name: name, factors: factors, userFactors: factorsOfUsers, itemFactors: itemFactors, configuration: configuration)
    }
}

extension SessionKNN {
    /// The same index without these owners' sessions, owners' indices unchanged. Nil without owners.
    public func removingSessions(of users: Set<Int>) -> SessionKNN? {
        guard let owners else { return nil }
        var sessions: [[Int32]] = [], kept: [Int32] = []
        for (s, owner) in zip(self.sessions, owners) where !users.contains(Int(owner)) {
            sessions.append(s)
            kept.append(owner)
        }
        return SessionKNN(sessions: sessions, owners: kept, items: itemCount, neighbours: neighbours, sampleSize: sampleSize)
    }

    /// The removed users' sessions go (the others keep their order). Exact: a session index has nothing else to
    /// subtract. Nil when the model was built without knowing whose sessions it holds.
    public func unlearning(_ request: UnlearningRequest) -> SessionKNN? {
        guard let owners else { return nil }
        var newIndex = [Int32](repeating: -1, count: request.before.users.count)
        for (n, u) in request.kept.enumerated() { newIndex[u] = Int32(n) }
        var sessions: [[Int32]] = [], kept: [Int32] = []
        for (s, owner) in zip(self.sessions, owners) where newIndex[Int(owner)] >= 0 {
            sessions.append(s)
            kept.append(newIndex[Int(owner)])
        }
        return SessionKNN(sessions: sessions, owners: kept, items: itemCount, neighbours: neighbours, sampleSize: sampleSize)
    }
}
