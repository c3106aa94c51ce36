import Foundation

/// Maps string features into a fixed number of buckets (the hashing trick), so that high-cardinality fields
/// (search terms, attribute values, tags) need no vocabulary. FNV-1a, not Swift's `Hasher`: the buckets must
/// be the same in every process that loads a model.
public struct FeatureHasher: Sendable, Equatable {
    public let width: Int

    public init(width: Int) {
        precondition(width > 0, "a feature hasher needs at least one bucket")
        self.width = width
    }

    /// The bucket of `feature` and its sign (±1; signed hashing keeps collisions unbiased in a dot product).
    public func bucket(_ feature: String) -> (index: Int, sign: Float) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in feature.utf8 {
            h ^= UInt64(byte)
            h &*= 0x100_0000_01b3
        }
        return (Int(h % UInt64(width)), (h >> 63) == 0 ? 1 : -1)
    }

    /// The words of `text` as signed buckets (`±(bucket + 1)`), in the space where the content model puts item
    /// titles: what a search leaves behind instead of its words.
    public func signedTerms(_ text: String) -> [Int32] {
        ItemContent.words(text).map { word in
            let (index, sign) = bucket(word)
            return Int32(index + 1) * (sign > 0 ? 1 : -1)
        }
    }

    /// A sparse hashed vector of `features` (collisions summed), sorted by bucket.
    public func vector(_ features: [(String, Float)]) -> [(index: Int32, value: Float)] {
        var cells: [Int: Float] = [:]
        for (feature, value) in features {
            let (index, sign) = bucket(feature)
            cells[index, default: 0] += sign * value
        }
        return cells.filter { $0.value != 0 }.sorted { $0.key < $1.key }.map { (Int32($0.key), $0.value) }
    }
}

/// What the content model knows of an item: metadata only, never who looked at it.
public struct ItemContent: Sendable, Equatable {
    /// The top-level category (`apparel`, `electronics`, `movie`): similarity is chosen per product type.
    public var productType: String
    /// Exact-match features: category path prefixes, brand, `key=value` attributes.
    public var categorical: [String]
    /// Free-text features: title words and tags.
    public var text: [String]

    public init(productType: String, categorical: [String], text: [String]) {
        self.productType = productType
        self.categorical = categorical
        self.text = text
    }

    /// Features from catalog fields: every prefix of the category path, the brand, each attribute as
    /// `key=value`, and the lower-cased words of the title and the tags.
    public init(category: String, brand: String?, attributes: [String: String], tags: [String], title: String) {
        let path = category.split(separator: "/").map { $0.lowercased() }
        productType = path.first ?? ""
        var categorical: [String] = []
        for depth in path.indices { categorical.append("cat:" + path[...depth].joined(separator: "/")) }
        if let brand, !brand.isEmpty { categorical.append("brand:" + brand.lowercased()) }
        for (key, value) in attributes.sorted(by: { $0.key < $1.key }) { categorical.append("attr:\(key.lowercased())=\(value.lowercased())") }
        self.categorical = categorical
        text = Self.words(title) + tags.flatMap(Self.words).map { "tag:" + $0 }
    }

    public static func words(_ text: String) -> [String] {
        text.lowercased().split { !$0.isLetter && !$0.isNumber }.filter { $0.count > 1 }.map(String.init)
    }
}

/// How items of one product type are compared.
public enum ContentSimilarity: String, Sendable, Codable, CaseIterable {
    /// Share of matching exact features (category, brand, specifications): cosine of binary vectors.
    case categorical
    /// TF-IDF cosine over title words and tags.
    case text
}

/// Content-based recommender: each item is a hashed, L2-normalised metadata vector, built with the
/// similarity of its product type; a user is the recency-weighted mean of the vectors of the items they
/// interacted with, and an item scores its cosine-like dot product with that profile. Needs no
/// interactions at all, which is what makes a new item reachable.
public struct ContentModel: ScoringModel {
    public let name = "content"
    public let itemCount: Int
    public let hasher: FeatureHasher
    /// The similarity used per product type (chosen, or inferred: categorical where items carry attributes).
    public let similarity: [String: ContentSimilarity]
    /// Half-life of an interaction's weight in the profile, in seconds (used when the context has times).
    public let halfLife: Double
    /// CSR rows of the item vectors.
    let offsets: [Int]
    let indices: [Int32]
    let values: [Float]

    /// - Parameters:
    ///   - similarity: overrides per product type; a type not named gets `categorical` when its items carry
    ///     more than their category path as exact features, `text` otherwise.
    public init(
        items: [ItemContent], width: Int = 1 << 14, similarity overrides: [String: ContentSimilarity] = [:],
        halfLife: Double = 14 * 86_400
    ) {
        hasher = FeatureHasher(width: width)
        itemCount = items.count
        self.halfLife = halfLife
        var chosen: [String: ContentSimilarity] = [:]
        for type in Set(items.map(\.productType)) {
            if let choice = overrides[type] {
                chosen[type] = choice
                continue
            }
            let ofType = items.filter { $0.productType == type }
            let specified = ofType.filter { $0.categorical.contains { !$0.hasPrefix("cat:") } }.count
            chosen[type] = specified * 2 >= ofType.count ? .categorical : .text
        }
        similarity = chosen
        // Inverse document frequency of text features, over the whole catalog.
        var documentFrequency: [String: Int] = [:]
        for item in items { for word in Set(item.text) { documentFrequency[word, default: 0] += 1 } }
        let n = Float(max(items.count, 1))
        var offsets = [0], indices: [Int32] = [], values: [Float] = []
        for item in items {
            let features: [(String, Float)]
            switch chosen[item.productType] ?? .categorical {
            case .categorical:
                // The category path and the other exact features each count once; text breaks ties.
                features = item.categorical.map { ($0, 1) } + item.text.map { ($0, 0.1) }
            case .text:
                var tf: [String: Float] = [:]
                for word in item.text { tf[word, default: 0] += 1 }
                features =
                    tf.map { word, count in (word, count * log(n / Float(documentFrequency[word] ?? 1)) + 1e-3) }
                    + item.categorical.filter { $0.hasPrefix("cat:") }.map { ($0, 0.5) }
            }
            var row = hasher.vector(features)
            let norm = row.reduce(0) { $0 + $1.value * $1.value }.squareRoot()
            if norm > 0 { for k in row.indices { row[k].value /= norm } }
            indices.append(contentsOf: row.map(\.index))
            values.append(contentsOf: row.map(\.value))
            offsets.append(indices.count)
        }
        self.offsets = offsets
        self.indices = indices
        self.values = values
    }

    /// Cosine similarity of two items' vectors.
    public func similarity(_ a: Int32, _ b: Int32) -> Float {
        var p = offsets[Int(a)], q = offsets[Int(b)]
        let pEnd = offsets[Int(a) + 1], qEnd = offsets[Int(b) + 1]
        var sum: Float = 0
        while p < pEnd && q < qEnd {
            if indices[p] == indices[q] {
                sum += values[p] * values[q]
                p += 1
                q += 1
            } else if indices[p] < indices[q] {
                p += 1
            } else {
                q += 1
            }
        }
        return sum
    }

    /// The item of `context` most similar to `item`, for "similar to X" explanations.
    public func mostSimilar(to item: Int32, in context: UserContext) -> (item: Int32, similarity: Float)? {
        var best: (Int32, Float)?
        for h in context.items where Int(h) < itemCount && h != item {
            let s = similarity(item, h)
            if s > (best?.1 ?? 0) { best = (h, s) }
        }
        return best
    }

    public func score(_ context: UserContext, into out: UnsafeMutableBufferPointer<Float>) {
        var profile = [Float](repeating: 0, count: hasher.width)
        let rate = log(2) / halfLife
        var total: Float = 0
        for (k, item) in context.items.enumerated() where Int(item) < itemCount {
            var weight = k < context.weights.count ? context.weights[k] : 1
            if k < context.itemTimes.count && context.time > 0 {
                weight *= Float(exp(-rate * Double(max(context.time - context.itemTimes[k], 0))))
            }
            total += weight
            for p in offsets[Int(item)]..<offsets[Int(item) + 1] { profile[Int(indices[p])] += weight * values[p] }
        }
        if total > 0 { for f in profile.indices where profile[f] != 0 { profile[f] /= total } }
        // Searched words weigh as much as half the item history (all of the profile when there is none).
        let valid = context.hashedTerms.filter { $0 != 0 && Int(abs($0)) <= hasher.width }
        if !valid.isEmpty {
            let share: Float = (total > 0 ? 0.5 : 1) / Float(valid.count).squareRoot()
            for t in valid { profile[Int(abs(t)) - 1] += (t > 0 ? 1 : -1) * share }
        }
        indices.withUnsafeBufferPointer { idx in
            values.withUnsafeBufferPointer { val in
                profile.withUnsafeBufferPointer { prof in
                    for i in 0..<itemCount {
                        var sum: Float = 0
                        for p in offsets[i]..<offsets[i + 1] { sum += val[p] * prof[Int(idx[p])] }
                        out[i] = sum
                    }
                }
            }
        }
    }
}
