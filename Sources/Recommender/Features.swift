import Foundation

/// A per-column affine scaler fitted on training rows and stored with the model, so that serving and later
/// fits transform features exactly as training did.
public struct FeatureScaler: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// (x − min) / (max − min): into [0, 1] on the training data.
        case minMax = "min-max"
        /// (x − mean) / standard deviation.
        case zScore = "z-score"
    }

    public let kind: Kind
    /// Per column: x ↦ (x − offset) · factor.
    public let offsets: [Float]
    public let factors: [Float]

    /// Fits on `rows` (all of equal width). A constant column maps to 0.
    public init(kind: Kind, fittedOn rows: [[Float]]) {
        self.kind = kind
        let width = rows.first?.count ?? 0
        var offsets = [Float](repeating: 0, count: width), factors = [Float](repeating: 0, count: width)
        for c in 0..<width {
            let column = rows.map { $0[c] }
            switch kind {
            case .minMax:
                let lo = column.min() ?? 0, hi = column.max() ?? 0
                offsets[c] = lo
                factors[c] = hi > lo ? 1 / (hi - lo) : 0
            case .zScore:
                let n = Float(max(column.count, 1))
                let mean = column.reduce(0, +) / n
                let variance = column.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
                offsets[c] = mean
                factors[c] = variance > 1e-12 ? 1 / variance.squareRoot() : 0
            }
        }
        self.offsets = offsets
        self.factors = factors
    }

    public func transform(_ row: [Float]) -> [Float] {
        precondition(row.count == offsets.count, "a row of \(row.count) features for a scaler fitted on \(offsets.count)")
        return (0..<row.count).map { (row[$0] - offsets[$0]) * factors[$0] }
    }
}

/// Behavioural features of each user, from interactions and item metadata: activity, the share of each
/// product type, the price level and the recency of the last interaction.
public struct BehaviourFeatures: Sendable {
    public let names: [String]
    /// One row per matrix row.
    public let rows: [[Float]]

    /// - Parameters:
    ///   - itemTypes: product type index of every item (`-1` when unknown), among `typeNames`.
    ///   - itemPrices: price of every item, when known.
    ///   - times: interaction times aligned with `matrix.indices` (empty: recency is 0).
    ///   - now: the reference time for recency.
    public init(matrix: SparseMatrix, itemTypes: [Int], typeNames: [String], itemPrices: [Double?], times: [Int64], now: Int64) {
        names = ["activity", "log_price"] + typeNames.map { "share:" + $0 } + ["days_since_last"]
        var rows: [[Float]] = []
        rows.reserveCapacity(matrix.rows)
        for u in 0..<matrix.rows {
            let range = matrix.offsets[u]..<matrix.offsets[u + 1]
            var shares = [Float](repeating: 0, count: typeNames.count)
            var priceSum = 0.0, priced = 0
            var last: Int64 = 0
            for p in range {
                let i = Int(matrix.indices[p])
                if itemTypes[i] >= 0 { shares[itemTypes[i]] += 1 }
                if let price = itemPrices[i] {
                    priceSum += log1p(max(price, 0))
                    priced += 1
                }
                if p < times.count { last = max(last, times[p]) }
            }
            let n = Float(max(range.count, 1))
            let recency = times.isEmpty ? 0 : Float(max(now - last, 0)) / 86_400
            rows.append([log1p(Float(range.count)), priced > 0 ? Float(priceSum / Double(priced)) : 0] + shares.map { $0 / n } + [recency])
        }
        self.rows = rows
    }
}

/// Fills a missing categorical value (an age band, say) by a majority vote of the `k` nearest users that have
/// one, by Euclidean distance over scaled features. The result says which values were imputed, so that
/// callers never pass them off as facts.
public struct KNNImputer: Sendable {
    public let k: Int

    public init(k: Int = 5) {
        precondition(k >= 1)
        self.k = k
    }

    public struct Imputed: Sendable, Equatable {
        public var value: String
        /// Share of the neighbours that voted for `value`.
        public var support: Float
    }

    /// For every row without a label, the imputed label (nil when no row votes); rows with a label are nil.
    ///
    /// - Parameters:
    ///   - references: the labelled rows that vote (default: every labelled row). A shop with a million subjects
    ///     bounds them: each unlabelled row is compared with every reference.
    ///   - threads: rows imputed in parallel.
    public func impute(features: [[Float]], labels: [String?], references: [Int]? = nil, threads: Int = 1) -> [Imputed?] {
        precondition(features.count == labels.count)
        let voters = references ?? labels.indices.filter { labels[$0] != nil }
        let unlabelled = labels.indices.filter { labels[$0] == nil }
        var out = [Imputed?](repeating: nil, count: labels.count)
        guard !voters.isEmpty, !unlabelled.isEmpty else { return out }
        precondition(voters.allSatisfy { labels[$0] != nil }, "a reference row without a label")
        // The references' features packed contiguously: the distance loop reads them once per unlabelled row.
        let width = features[voters[0]].count
        precondition(features.allSatisfy { $0.count == width }, "feature rows of different widths")
        var packed = [Float](repeating: 0, count: max(1, voters.count * width))
        for (r, row) in voters.enumerated() {
            for c in 0..<min(width, features[row].count) { packed[r * width + c] = features[row][c] }
        }
        packed.withUnsafeBufferPointer { packed in
            let references = UncheckedPointer(packed.baseAddress!)
            out.withShared { out in
                parallelChunks(count: unlabelled.count, threads: min(threads, max(1, unlabelled.count / 256))) { range in
                    for n in range {
                        let r = unlabelled[n]
                        out.base[r] = vote(features[r], width: width, packed: references.pointer, voters: voters, labels: labels)
                    }
                }
            }
        }
        return out
    }

    /// The majority label of the `k` references nearest to `row`; ties go to the label with the closest neighbour,
    /// then by name, and equal distances to the lower row (deterministic).
    private func vote(_ row: [Float], width: Int, packed: UnsafePointer<Float>, voters: [Int], labels: [String?]) -> Imputed? {
        var nearest: [(distance: Float, row: Int)] = []
        nearest.reserveCapacity(k + 1)
        for (r, voter) in voters.enumerated() {
            var sum: Float = 0
            let base = r * width
            for c in 0..<min(width, row.count) {
                let d = row[c] - packed[base + c]
                sum += d * d
            }
            if nearest.count == k, let worst = nearest.last, (sum, voter) >= (worst.distance, worst.row) { continue }
            let at = nearest.firstIndex { (sum, voter) < ($0.distance, $0.row) } ?? nearest.count
            nearest.insert((sum, voter), at: at)
            if nearest.count > k { nearest.removeLast() }
        }
        var votes: [String: (count: Int, closest: Float)] = [:]
        for n in nearest {
            let label = labels[n.row]!
            let v = votes[label] ?? (0, n.distance)
            votes[label] = (v.count + 1, min(v.closest, n.distance))
        }
        guard let winner = votes.max(by: { a, b in (a.value.count, -a.value.closest, b.key) < (b.value.count, -b.value.closest, a.key) }) else {
            return nil
        }
        return Imputed(value: winner.key, support: Float(winner.value.count) / Float(nearest.count))
    }

    static func distance(_ a: [Float], _ b: [Float]) -> Float {
        var sum: Float = 0
        for i in 0..<min(a.count, b.count) { sum += (a[i] - b[i]) * (a[i] - b[i]) }
        return sum
    }
}
