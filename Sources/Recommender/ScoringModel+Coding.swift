// Encodings of the models a served model holds. What only unlearning needs (item-kNN's co-occurrences, EASE's
// inverse) is left out: a decoded model scores and explains as the original did, and its unlearning answers nil.

/// The concrete type of an encoded model. Fixed for good: stored models carry these.
private enum ModelTag: UInt8 {
    case hybrid = 1, als, itemKNN, ease, content, popularity, trending, zero
}

extension ModelWriter {
    /// A model tagged by its concrete type; throws for a type this format does not know rather than dropping it.
    package mutating func model(_ model: any ScoringModel) throws(ModelCodingError) {
        switch model {
        case let m as HybridModel:
            scalar(ModelTag.hybrid.rawValue)
            count(m.components.count)
            for c in m.components { try self.model(c) }
            floats(m.weights)
            optional(m.recency) { $0.float($1) }
        case let m as ALSModel:
            scalar(ModelTag.als.rawValue)
            try m.write(to: &self)
        case let m as ItemKNNModel:
            scalar(ModelTag.itemKNN.rawValue)
            m.write(to: &self)
        case let m as EASEModel:
            scalar(ModelTag.ease.rawValue)
            int(m.itemCount)
            int32s(m.items)
            floats(m.weights)
        case let m as ContentModel:
            scalar(ModelTag.content.rawValue)
            m.write(to: &self)
        case let m as PopularityModel:
            scalar(ModelTag.popularity.rawValue)
            floats(m.counts)
        case let m as TrendingModel:
            scalar(ModelTag.trending.rawValue)
            m.write(to: &self)
        case let m as ZeroModel:
            // A hybrid's zero-weight component (``HybridTrainer/fit(_:weights:recency:)``).
            scalar(ModelTag.zero.rawValue)
            int(m.itemCount)
        default:
            throw .unencodable("no encoding for model type \(type(of: model))")
        }
    }

    package mutating func matrix(_ m: SparseMatrix) {
        int(m.rows)
        int(m.columns)
        ints(m.offsets)
        int32s(m.indices)
        floats(m.values)
    }
}

extension ModelReader {
    /// A model written by ``ModelWriter/model(_:)`` that scores `items` items: checked before anything of that size is
    /// allocated, so that a damaged count cannot ask for terabytes. A hybrid may not nest (nesting would let hostile
    /// bytes recurse without bound).
    package mutating func model(items n: Int, nested: Bool = false) throws(ModelCodingError) -> any ScoringModel {
        let raw: UInt8 = try scalar("model tag")
        guard let tag = ModelTag(rawValue: raw) else { throw .inconsistent("unknown model tag \(raw)") }
        switch tag {
        case .hybrid:
            try ModelCheck.require(!nested, "nested hybrid")
            var components: [any ScoringModel] = []
            for _ in 0..<(try count("hybrid components")) { components.append(try model(items: n, nested: true)) }
            let weights = try floats("hybrid weights")
            let recency = try optional("hybrid recency") { r throws(ModelCodingError) in try r.float("hybrid recency") }
            try ModelCheck.require(!components.isEmpty && components.count == weights.count, "hybrid components and weights")
            try ModelCheck.require(recency.map { $0 > 0 && $0.isFinite } ?? true, "hybrid recency")
            return HybridModel(components: components, weights: weights, recency: recency)
        case .als: return try ALSModel(reading: &self, items: n)
        case .itemKNN: return try ItemKNNModel(reading: &self, items: n)
        case .ease: return try EASEModel(reading: &self, items: n)
        case .content: return try ContentModel(reading: &self, items: n)
        case .popularity:
            let counts = try floats("popularity counts")
            try ModelCheck.require(counts.count == n, "popularity items")
            return PopularityModel(counts: counts)
        case .trending: return try TrendingModel(reading: &self, items: n)
        case .zero:
            try ModelCheck.require(try int("zero model items") == n, "zero model items")
            return ZeroModel(itemCount: n)
        }
    }

    package mutating func matrix(_ what: String) throws(ModelCodingError) -> SparseMatrix {
        let rows = try size("\(what) rows"), columns = try size("\(what) columns")
        let offsets = try ints("\(what) offsets"), indices = try int32s("\(what) indices"), values = try floats("\(what) values")
        try ModelCheck.require(indices.count == values.count, "\(what) indices and values")
        try ModelCheck.offsets(offsets, rows: rows, total: indices.count, what)
        try ModelCheck.indices(indices, below: columns, what)
        return SparseMatrix(rows: rows, columns: columns, offsets: offsets, indices: indices, values: values)
    }
}

extension ALSModel {
    func write(to w: inout ModelWriter) throws(ModelCodingError) {
        // Folding in solves with the configuration's width: a model whose two widths differ could not score anyone new.
        guard configuration.factors == factors else { throw .unencodable("ALS configuration factors differ from the model's") }
        w.string(name)
        w.int(factors)
        w.floats(userFactors)
        w.floats(itemFactors)
        w.float(configuration.regularization)
        w.float(configuration.alpha)
        w.int(configuration.iterations)
        w.int(configuration.conjugateGradientSteps)
        w.scalar(configuration.seed)
        w.int(configuration.threads)
    }

    init(reading r: inout ModelReader, items n: Int) throws(ModelCodingError) {
        let name = try r.string("ALS name"), factors = try r.size("ALS factors")
        let users = try r.floats("ALS user factors"), items = try r.floats("ALS item factors")
        var configuration = ALS.Configuration()
        configuration.factors = factors
        configuration.regularization = try r.float("ALS regularization")
        configuration.alpha = try r.float("ALS alpha")
        configuration.iterations = try r.int("ALS iterations")
        configuration.conjugateGradientSteps = try r.int("ALS steps")
        configuration.seed = try r.scalar("ALS seed")
        configuration.threads = try r.int("ALS threads")
        try ModelCheck.require(factors > 0 && users.count % factors == 0 && items.count % factors == 0, "ALS factor sizes")
        try ModelCheck.require(items.count / factors == n, "ALS items")
        self.init(name: name, factors: factors, userFactors: users, itemFactors: items, configuration: configuration)
    }
}

extension ItemKNNModel {
    func write(to w: inout ModelWriter) {
        w.string(name)
        w.int(neighbours)
        w.matrix(similarities)
    }

    /// Without co-occurrences: scores and explains, cannot unlearn.
    init(reading r: inout ModelReader, items n: Int) throws(ModelCodingError) {
        let name = try r.string("item-kNN name"), neighbours = try r.size("item-kNN neighbours")
        let similarities = try r.matrix("item-kNN similarities")
        try ModelCheck.require(similarities.rows == n && similarities.columns == n, "item-kNN items")
        self.init(name: name, similarities: similarities, neighbours: neighbours, cooccurrence: nil)
    }
}

extension EASEModel {
    /// Scoring only: without the inverse, ``unlearning(_:)`` answers nil.
    init(reading r: inout ModelReader, items n: Int) throws(ModelCodingError) {
        let itemCount = try r.size("EASE items"), items = try r.int32s("EASE modeled items"), weights = try r.floats("EASE weights")
        try ModelCheck.require(itemCount == n, "EASE items")
        try ModelCheck.indices(items, below: itemCount, "EASE modeled items")
        try ModelCheck.require(zip(items, items.dropFirst()).allSatisfy { $0 < $1 }, "EASE modeled items not increasing")
        try ModelCheck.require(weights.count == (try ModelCheck.product(items.count, items.count, "EASE weights")), "EASE weights size")
        self.itemCount = itemCount
        self.items = items
        self.position = Self.positions(of: items, itemCount: itemCount)
        self.weights = weights
        inverse = []
    }
}

extension ContentModel {
    func write(to w: inout ModelWriter) {
        w.int(itemCount)
        w.int(hasher.width)
        w.map(similarity) { $0.string($1.rawValue) }
        w.double(halfLife)
        w.ints(offsets)
        w.int32s(indices)
        w.floats(values)
    }

    /// Hash widths past this are refused: scoring allocates a profile as wide.
    static let maximumWidth = 1 << 26

    init(reading r: inout ModelReader, items n: Int) throws(ModelCodingError) {
        let itemCount = try r.size("content items"), width = try r.size("content hash width")
        var similarity: [String: ContentSimilarity] = [:]
        for _ in 0..<(try r.count("content similarities", elementSize: 16)) {
            let type = try r.string("content product type")
            guard let choice = ContentSimilarity(rawValue: try r.string("content similarity")) else { throw .inconsistent("content similarity") }
            try ModelCheck.require(similarity.updateValue(choice, forKey: type) == nil, "content product type repeated")
        }
        let halfLife = try r.double("content half-life")
        let offsets = try r.ints("content offsets"), indices = try r.int32s("content indices"), values = try r.floats("content values")
        try ModelCheck.require(itemCount == n, "content items")
        try ModelCheck.require(width > 0 && width <= Self.maximumWidth && halfLife > 0 && halfLife.isFinite, "content width or half-life")
        try ModelCheck.require(indices.count == values.count, "content indices and values")
        try ModelCheck.offsets(offsets, rows: itemCount, total: indices.count, "content")
        try ModelCheck.indices(indices, below: width, "content buckets")
        self.itemCount = itemCount
        hasher = FeatureHasher(width: width)
        self.similarity = similarity
        self.halfLife = halfLife
        self.offsets = offsets
        self.indices = indices
        self.values = values
    }
}

extension TrendingModel {
    func write(to w: inout ModelWriter) {
        w.int(itemCount)
        w.int64s(times)
        w.int32s(items)
        w.double(halfLife)
        w.optional(precomputed) {
            $0.scalar($1.time)
            $0.floats($1.scores)
        }
    }

    init(reading r: inout ModelReader, items n: Int) throws(ModelCodingError) {
        let itemCount = try r.size("trending items"), times = try r.int64s("trending times"), items = try r.int32s("trending events")
        let halfLife = try r.double("trending half-life")
        let precomputed = try r.optional("trending precomputed") { r throws(ModelCodingError) -> (time: Int64, scores: [Float]) in
            (try r.scalar("trending precomputed time"), try r.floats("trending precomputed scores"))
        }
        try ModelCheck.require(itemCount == n && times.count == items.count, "trending items")
        try ModelCheck.indices(items, below: itemCount, "trending events")
        try ModelCheck.require(zip(times, times.dropFirst()).allSatisfy { $0 <= $1 }, "trending times not sorted")
        // Scoring turns 20 half-lives into whole seconds.
        try ModelCheck.require(halfLife > 0 && halfLife < Double(Int64.max) / 32, "trending half-life")
        // Scoring subtracts the precomputed time from the request's: far from both ends of Int64.
        try ModelCheck.require(
            precomputed.map { $0.scores.count == itemCount && (-(1 << 60)..<(1 << 60)).contains($0.time) } ?? true, "trending precomputed")
        self.itemCount = itemCount
        self.times = times
        self.items = items
        self.halfLife = halfLife
        self.precomputed = precomputed
    }
}

extension SessionKNN {
    package func write(to w: inout ModelWriter) {
        w.int(itemCount)
        w.int(neighbours)
        w.int(sampleSize)
        w.ints(sessions.map(\.count))
        w.int32s(Array(sessions.joined()))
        w.optional(owners) { $0.int32s($1) }
    }

    /// The item index is rebuilt from the sessions.
    package init(reading r: inout ModelReader, items n: Int) throws(ModelCodingError) {
        let itemCount = try r.size("session items"), neighbours = try r.size("session neighbours"), sampleSize = try r.size("session sample")
        let lengths = try r.ints("session lengths"), items = try r.int32s("session contents")
        let owners = try r.optional("session owners") { r throws(ModelCodingError) in try r.int32s("session owners") }
        try ModelCheck.require(itemCount == n, "session items")
        try ModelCheck.indices(items, below: itemCount, "session items")
        try ModelCheck.require(owners.map { $0.count == lengths.count } ?? true, "session owners")
        var sessions: [[Int32]] = []
        sessions.reserveCapacity(lengths.count)
        var start = 0
        for n in lengths {
            try ModelCheck.require(n >= 0 && n <= items.count - start, "session lengths")
            sessions.append(Array(items[start..<(start + n)]))
            start += n
        }
        try ModelCheck.require(start == items.count, "session lengths")
        self.init(sessions: sessions, owners: owners, items: itemCount, neighbours: neighbours, sampleSize: sampleSize)
    }
}

extension SegmentPopularity {
    package func write(to w: inout ModelWriter) {
        w.int(minimumUsers)
        w.int(itemCount)
        w.map(counts) { $0.floats($1) }
    }

    package init(reading r: inout ModelReader, items n: Int) throws(ModelCodingError) {
        minimumUsers = try r.int("segment minimum")
        itemCount = try r.size("segment items")
        try ModelCheck.require(itemCount == n, "segment items")
        var counts: [String: [Float]] = [:]
        for _ in 0..<(try r.count("segments", elementSize: 16)) {
            let key = try r.string("segment key")
            let row = try r.floats("segment counts")
            try ModelCheck.require(row.count == itemCount, "segment counts size")
            try ModelCheck.require(counts.updateValue(row, forKey: key) == nil, "segment key repeated")
        }
        try ModelCheck.require(minimumUsers >= 1, "segment minimum")
        self.counts = counts
    }
}

extension FeatureScaler {
    package func write(to w: inout ModelWriter) {
        w.string(kind.rawValue)
        w.floats(offsets)
        w.floats(factors)
    }

    package init(reading r: inout ModelReader) throws(ModelCodingError) {
        guard let kind = Kind(rawValue: try r.string("scaler kind")) else { throw .inconsistent("scaler kind") }
        self.kind = kind
        offsets = try r.floats("scaler offsets")
        factors = try r.floats("scaler factors")
        try ModelCheck.require(offsets.count == factors.count, "scaler sizes")
    }
}

extension KNNImputer.Imputed {
    package func write(to w: inout ModelWriter) {
        w.string(value)
        w.float(support)
    }

    package init(reading r: inout ModelReader) throws(ModelCodingError) {
        self.init(value: try r.string("imputed value"), support: try r.float("imputed support"))
    }
}
