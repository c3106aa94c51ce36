import FeatureStore
import Foundation
import Policy
import Recommender
import Storage

/// Customer segments over behaviour (purchase frequency, price level, discount and new-arrival share, category
/// mix, recency), over generalized demographics, or both views combined.
public struct SegmentModel: Sendable {
    public enum View: String, Sendable, CaseIterable, Codable { case behaviour, demographics, both }
    public enum Method: String, Sendable, CaseIterable, Codable { case kmeans, ward }

    public struct Segment: Sendable, Codable, Equatable {
        public var id: Int
        public var name: String
        public var size: Int
        /// The features that set the segment apart, in standard deviations from the mean of all subjects.
        public var traits: [String]
    }

    public let view: View
    public let method: Method
    public let silhouette: Float
    public let segments: [Segment]
    public let featureNames: [String]
    public let scaler: FeatureScaler
    public let centroids: [[Float]]
    /// Segment of each training subject, by token.
    public internal(set) var assignments: [String: Int]

    /// Behaviour features of a subject from their items (catalog metadata only, no identity).
    public static let behaviourNames = ["purchases_per_week", "price_level", "discount_share", "new_share", "days_since_last"]

    static func behaviour(items: [(id: String, time: Int64)], purchases: Int, catalog: [String: CatalogItem], types: [String], now: Int64) -> [Float]
    {
        guard !items.isEmpty else { return [Float](repeating: 0, count: behaviourNames.count + types.count) }
        var priceSum = 0.0, priced = 0, clearance = 0, new = 0
        var shares = [Float](repeating: 0, count: types.count)
        let first = items.map(\.time).min()!, last = items.map(\.time).max()!
        for (id, _) in items {
            guard let item = catalog[id] else { continue }
            if let price = item.price { priceSum += log1p(max(price, 0)); priced += 1 }
            if item.tags.contains("clearance") || item.tags.contains("sale") { clearance += 1 }
            if item.tags.contains("new") { new += 1 }
            if let t = types.firstIndex(of: String(item.category.split(separator: "/").first ?? "")) { shares[t] += 1 }
        }
        let n = Float(items.count)
        let weeks = max(Float(now - first) / (7 * 86_400), 1)
        return [
            Float(purchases) / weeks, priced > 0 ? Float(priceSum / Double(priced)) : 0, Float(clearance) / n, Float(new) / n,
            Float(max(now - last, 0)) / 86_400,
        ] + shares.map { $0 / n }
    }

    /// Clusters the subjects of a training snapshot. `k` nil chooses k in 2...8 by silhouette (k-means) or
    /// uses 4 (Ward, which is cut at a given k).
    public static func fit(
        snapshot: TrainingSnapshot, catalog: [CatalogItem], view: View = .behaviour, method: Method = .kmeans, k: Int? = nil,
        now: Date
    ) -> SegmentModel? {
        let byID = Dictionary(catalog.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let types = Array(Set(catalog.map { String($0.category.split(separator: "/").first ?? "") })).sorted()
        var itemsOf = [[(id: String, time: Int64)]](repeating: [], count: snapshot.tokens.count)
        for x in snapshot.interactions { itemsOf[Int(x.user)].append((snapshot.items[Int(x.item)], x.time)) }
        let time = Int64(now.timeIntervalSince1970)
        let behaviourRows = (0..<snapshot.tokens.count).map {
            behaviour(items: itemsOf[$0], purchases: snapshot.purchases[$0], catalog: byID, types: types, now: time)
        }
        let behaviourNames = Self.behaviourNames + types.map { "share:" + $0 }
        // Demographics: one-hot age band, region and device class.
        let fields = ["age_band", "location", "device"]
        let values = fields.map { f in Array(Set(snapshot.profiles.compactMap { $0[f] })).sorted() }
        let demographicNames = zip(fields, values).flatMap { f, vs in vs.map { "\(f)=\($0)" } }
        let demographicRows = snapshot.profiles.map { profile in zip(fields, values).flatMap { f, vs in vs.map { profile[f] == $0 ? Float(1) : 0 } } }
        let (names, raw): ([String], [[Float]]) =
            switch view {
            case .behaviour: (behaviourNames, behaviourRows)
            case .demographics: (demographicNames, demographicRows)
            case .both: (behaviourNames + demographicNames, zip(behaviourRows, demographicRows).map { $0 + $1 })
            }
        guard raw.count >= 4, !names.isEmpty else { return nil }
        let scaler = FeatureScaler(kind: .zScore, fittedOn: raw)
        var points = raw.map(scaler.transform)
        if view == .both {
            // Each view weighs the same whatever its number of columns.
            let b = Float(behaviourNames.count).squareRoot(), d = Float(max(demographicNames.count, 1)).squareRoot()
            points = points.map { row in row.enumerated().map { $0.offset < behaviourNames.count ? $0.element / b : $0.element / d } }
        }
        let result: Clustering.Result
        switch method {
        case .kmeans:
            result =
                k.map { Clustering.kMeans(points, k: min($0, points.count)) }
                ?? Clustering.kMeansChoosingK(points, range: 2...min(8, points.count - 1)).result
        case .ward:
            // O(n²): cluster an even sample, then give every subject its nearest Ward centroid.
            let step = max(points.count / 1500, 1)
            let sample = Array(stride(from: 0, to: points.count, by: step)).map { points[$0] }
            let ward = Clustering.ward(sample, k: min(k ?? 4, sample.count))
            result = Clustering.Result(assignments: points.map { Clustering.nearest($0, among: ward.centroids) }, centroids: ward.centroids)
        }
        let probeStep = max(points.count / 1500, 1)
        let probe = Array(stride(from: 0, to: points.count, by: probeStep))
        let silhouette = Clustering.silhouette(probe.map { points[$0] }, probe.map { result.assignments[$0] })
        // Describe each segment by its mean in standard deviations (the unweighted scaled features).
        let scaled = raw.map(scaler.transform)
        let profiles = (0..<result.k).map { c -> [Float] in
            let rows = scaled.indices.filter { result.assignments[$0] == c }.map { scaled[$0] }
            return (0..<names.count).map { f in rows.isEmpty ? 0 : rows.reduce(0) { $0 + $1[f] } / Float(rows.count) }
        }
        var used = Set<String>()
        let segments = (0..<result.k).map { c -> Segment in
            let size = result.assignments.filter { $0 == c }.count
            let order = names.indices.sorted { abs(profiles[c][$0]) > abs(profiles[c][$1]) }
            let traits = order.prefix(3).map { String(format: "%@ %+.1fσ", names[$0], profiles[c][$0]) }
            var name = Self.name(profiles[c], names: names)
            if used.contains(name) { name += " \(c + 1)" }
            used.insert(name)
            return Segment(id: c, name: name, size: size, traits: traits)
        }
        var assignments: [String: Int] = [:]
        for (t, token) in snapshot.tokens.enumerated() { assignments[token.rawValue] = result.assignments[t] }
        return SegmentModel(
            view: view, method: method, silhouette: silhouette, segments: segments, featureNames: names, scaler: scaler,
            centroids: result.centroids, assignments: assignments)
    }

    /// A readable name from the most telling behaviour traits.
    static func name(_ profile: [Float], names: [String]) -> String {
        func z(_ feature: String) -> Float { names.firstIndex(of: feature).map { profile[$0] } ?? 0 }
        // In order of what matters most to a shop: price behaviour first.
        let candidates: [(String, Float)] = [
            ("bargain hunters", z("discount_share")), ("premium buyers", z("price_level")),
            ("frequent buyers", z("purchases_per_week")), ("trend-seekers", z("new_share")),
            ("lapsed shoppers", z("days_since_last")),
        ]
        if let first = candidates.first(where: { $0.1 > 0.75 }) { return first.0 }
        if let top = names.indices.filter({ names[$0].hasPrefix("share:") || names[$0].contains("=") }).max(by: { profile[$0] < profile[$1] }),
            profile[top] > 0.5
        {
            return names[top].replacingOccurrences(of: "share:", with: "") + " fans"
        }
        return "regular shoppers"
    }

    /// The segment of a subject from their current history (behaviour view only).
    public func segment(of history: [StoredInteraction], catalog: [String: CatalogItem], types: [String], now: Int64) -> Segment? {
        guard view == .behaviour, !history.isEmpty else { return nil }
        let items = history.filter { !$0.item.isEmpty }.map { (id: $0.item, time: $0.time) }
        let row = Self.behaviour(items: items, purchases: history.filter { $0.kind == .purchase }.count, catalog: catalog, types: types, now: now)
        guard row.count == scaler.offsets.count else { return nil }
        return segments[Clustering.nearest(scaler.transform(row), among: centroids)]
    }
}
