/// A train/test split mapped to dense indices, evaluated as PROTOCOL.md prescribes:
/// candidates are the catalog minus the user's train items; relevant items are the user's test items.
public struct EvaluationSplit: Sendable {
    /// User ids per index. Settable so that an id can be replaced (a forgotten subject's) without re-indexing.
    public var users: [String]
    public let items: [String]
    public let train: [Interaction]
    public let trainMatrix: SparseMatrix
    /// Per user index, the test items.
    public let relevant: [Set<Int32>]
    /// Per user index, the time of the last train interaction: "now" for that user.
    public let referenceTimes: [Int64]
    /// Item metadata for content-based models, one per item index (empty features when unknown).
    public let itemContent: [ItemContent]
    /// The time of each cell of `trainMatrix` (its latest interaction), aligned with `trainMatrix.indices`.
    public let trainTimes: [Int64]

    /// - Parameters:
    ///   - catalog: item ids in catalog order (with optional metadata); items only seen in the ratings are appended.
    public init(train: [RatingRow], test: [RatingRow], catalog: [(id: String, content: ItemContent?)] = []) {
        var itemIndex: [String: Int32] = [:]
        var items: [String] = []
        var content: [ItemContent] = []
        func item(_ id: String, _ c: ItemContent? = nil) -> Int32 {
            if let i = itemIndex[id] { return i }
            let i = Int32(items.count)
            itemIndex[id] = i
            items.append(id)
            content.append(c ?? ItemContent(productType: "", categorical: [], text: []))
            return i
        }
        for entry in catalog { _ = item(entry.id, entry.content) }
        var userIndex: [String: Int32] = [:]
        var users: [String] = []
        func user(_ id: String) -> Int32 {
            if let u = userIndex[id] { return u }
            let u = Int32(users.count)
            userIndex[id] = u
            users.append(id)
            return u
        }
        var interactions: [Interaction] = []
        interactions.reserveCapacity(train.count)
        for row in train {
            interactions.append(Interaction(user: user(row.user), item: item(row.item), weight: 1, time: row.timestamp))
        }
        var relevant: [Set<Int32>] = []
        for row in test {
            let u = Int(user(row.user))
            let i = item(row.item)
            while relevant.count <= u { relevant.append([]) }
            relevant[u].insert(i)
        }
        while relevant.count < users.count { relevant.append([]) }
        self.init(users: users, items: items, train: interactions, relevant: relevant, itemContent: content)
    }

    /// A split of generated data: users and items named by their index, no item metadata.
    public init(users: Int, items: Int, train: [Interaction], test: [Interaction]) {
        var relevant = [Set<Int32>](repeating: [], count: users)
        for x in test { relevant[Int(x.user)].insert(x.item) }
        self.init(
            users: (0..<users).map { "u\($0)" }, items: (0..<items).map { "i\($0)" }, train: train, relevant: relevant,
            itemContent: Array(repeating: ItemContent(productType: "", categorical: [], text: []), count: items))
    }

    init(users: [String], items: [String], train: [Interaction], relevant: [Set<Int32>], itemContent: [ItemContent]) {
        self.users = users
        self.items = items
        self.train = train
        let matrix = SparseMatrix(users: users.count, items: items.count, interactions: train)
        self.trainMatrix = matrix
        self.relevant = relevant
        var reference = [Int64](repeating: 0, count: users.count)
        var times = [Int64](repeating: 0, count: matrix.nonZeroCount)
        for x in train {
            let u = Int(x.user)
            reference[u] = max(reference[u], x.time)
            // Rows are sorted by column: find the cell by binary search.
            var lo = matrix.offsets[u], hi = matrix.offsets[u + 1]
            while lo < hi {
                let mid = (lo + hi) / 2
                if matrix.indices[mid] < x.item { lo = mid + 1 } else { hi = mid }
            }
            times[lo] = max(times[lo], x.time)
        }
        self.referenceTimes = reference
        self.trainTimes = times
        self.itemContent = itemContent
    }

    /// The same rule applied to the training rows: each user's last 20% (at least one) become validation.
    /// Used for every hyperparameter and blend weight; the test set is never looked at.
    public func validationSplit() -> EvaluationSplit {
        var perUser = [[Interaction]](repeating: [], count: users.count)
        for x in train { perUser[Int(x.user)].append(x) }
        var inner: [Interaction] = []
        var held = [Set<Int32>](repeating: [], count: users.count)
        for (u, rows) in perUser.enumerated() {
            let sorted = rows.sorted { ($0.time, $0.item) < ($1.time, $1.item) }
            let nTest = sorted.count >= 2 ? max(1, sorted.count / 5) : 0
            inner.append(contentsOf: sorted.prefix(sorted.count - nTest))
            held[u] = Set(sorted.suffix(nTest).map(\.item))
        }
        return EvaluationSplit(users: users, items: items, train: inner, relevant: held, itemContent: itemContent)
    }

    /// The context a model sees for user `u`: the user's train items at the user's reference time.
    public func context(forUser u: Int) -> UserContext {
        let row = trainMatrix.columns(ofRow: u)
        let range = trainMatrix.offsets[u]..<trainMatrix.offsets[u + 1]
        return UserContext(
            user: u, items: Array(row), weights: Array(trainMatrix.values[range]), time: referenceTimes[u],
            itemTimes: Array(trainTimes[range]))
    }

    /// Top-k for every user with at least one relevant item (the others get an empty list).
    public func recommendAll(_ model: any ScoringModel, k: Int, threads: Int) -> [[Int32]] {
        var lists = [[Int32]](repeating: [], count: users.count)
        let split = self
        lists.withShared { out in
            parallelChunks(count: split.users.count, threads: threads) { range in
                var scores = [Float](repeating: 0, count: model.itemCount)
                var mask = [Bool](repeating: false, count: model.itemCount)
                for u in range where !split.relevant[u].isEmpty {
                    let context = split.context(forUser: u)
                    scores.withUnsafeMutableBufferPointer { s in
                        model.score(context, into: s)
                        for i in context.items { mask[Int(i)] = true }
                        let top = TopK.select(scores: UnsafeBufferPointer(s), k: k) { mask[$0] }
                        for i in context.items { mask[Int(i)] = false }
                        (out.base + u).pointee = top.items
                    }
                }
            }
        }
        return lists
    }

    public func metrics(_ lists: [[Int32]], k: Int) -> RankingMetrics {
        RankingMetrics.compute(recommendations: lists, relevant: relevant, k: k, catalogSize: items.count)
    }
}
