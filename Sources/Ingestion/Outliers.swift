import Foundation
import Policy
import Pseudonymization
import Synchronization

/// How numeric outliers (dwell time, quantities, prices) are found and what happens to them.
public struct OutlierPolicy: Sendable, Equatable {
    public enum Action: String, CaseIterable, Sendable {
        /// Replace the value by the nearest fence.
        case cap
        /// Reject the event, with the reason.
        case exclude
        /// Only count it.
        case keep
    }

    public enum Method: String, CaseIterable, Sendable {
        /// Outside [Q1 − t·IQR, Q3 + t·IQR].
        case iqr
        /// |x − median| / (1.4826 · MAD) above t.
        case robustZ = "robust-z"
    }

    public var action: Action = .cap
    public var method: Method = .iqr
    /// t; nil means 3 for IQR (Tukey's "far out") and 3.5 for the robust z-score (Iglewicz and Hoaglin).
    public var threshold: Double?
    /// A category is judged only once this many values were seen in it; before that its product type, then
    /// every category together, stand in.
    public var minimumSamples = 30

    public init() {}

    public var effectiveThreshold: Double { threshold ?? (method == .iqr ? 3 : 3.5) }
}

/// Median, quartiles and median absolute deviation of a sample.
public struct RobustStatistics: Sendable, Equatable {
    public var median: Double
    public var q1: Double
    public var q3: Double
    public var mad: Double

    /// Quartiles by linear interpolation between order statistics (type 7, as numpy and R default).
    public init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        func quantile(_ p: Double) -> Double {
            let h = p * Double(sorted.count - 1)
            let lo = Int(h.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
            return sorted[lo] + (h - Double(lo)) * (sorted[hi] - sorted[lo])
        }
        median = quantile(0.5)
        q1 = quantile(0.25)
        q3 = quantile(0.75)
        let deviations = sorted.map { abs($0 - quantile(0.5)) }.sorted()
        let m = deviations.count
        mad = m % 2 == 1 ? deviations[m / 2] : (deviations[m / 2 - 1] + deviations[m / 2]) / 2
    }

    /// The interval outside which a value is an outlier.
    public func fences(_ method: OutlierPolicy.Method, threshold t: Double) -> ClosedRange<Double> {
        switch method {
        case .iqr:
            let iqr = q3 - q1
            return (q1 - t * iqr)...(q3 + t * iqr)
        case .robustZ:
            let scale = 1.4826 * mad
            return (median - t * scale)...(median + t * scale)
        }
    }
}

/// Finds outliers per field and per item category against the values seen recently. The values are skewed
/// (a few long reads, bulk orders, luxury items), so statistics are taken on log(1 + x).
///
/// Holds only numbers per category, never who sent them.
public final class OutlierDetector: Sendable {
    public enum Verdict: Equatable, Sendable {
        case normal
        /// Outside the fences; `bound` is the nearest fence on the original scale.
        case outlier(bound: Double)
        /// Too few values seen to judge.
        case unjudged
    }

    struct Reservoir {
        var values: [Double] = []
        var next = 0
        var seen = 0
        var statistics: RobustStatistics?
        var sinceFit = 0
    }

    public let policy: OutlierPolicy
    /// Values kept per key (the most recent ones).
    let capacity = 1024
    private let reservoirs = Mutex<[String: Reservoir]>([:])

    public init(policy: OutlierPolicy) { self.policy = policy }

    /// Judges `value` of `field` for an item of `category` (a path like `apparel/shoes`), then records it.
    public func judge(field: String, category: String, value: Double) -> Verdict {
        let x = log1p(max(value, 0))
        let keys = Self.keys(field: field, category: category)
        return reservoirs.withLock { table in
            var verdict = Verdict.unjudged
            for key in keys {
                guard let r = table[key], r.seen >= policy.minimumSamples, let stats = r.statistics else { continue }
                let fences = stats.fences(policy.method, threshold: policy.effectiveThreshold)
                if fences.contains(x) || fences.lowerBound == fences.upperBound && x == fences.lowerBound {
                    verdict = .normal
                } else {
                    verdict = .outlier(bound: expm1(x < fences.lowerBound ? fences.lowerBound : fences.upperBound).clamped(min: 0))
                }
                break
            }
            for key in keys { table[key, default: Reservoir()].add(x, capacity: capacity) }
            return verdict
        }
    }

    /// Category, then product type, then the whole field.
    static func keys(field: String, category: String) -> [String] {
        var keys = ["\(field)|\(category)"]
        if let type = category.split(separator: "/").first, String(type) != category { keys.append("\(field)|\(type)") }
        keys.append("\(field)|*")
        return keys
    }
}

extension OutlierDetector {
    /// Finds numeric outliers per item category and applies the configured action. Returns the events to keep,
    /// the rejections the action added, and the number of flagged values per source and per field.
    public func screen(
        _ events: [(index: Int, event: CleanEvent)], categories: [String: String]
    ) -> (kept: [(index: Int, event: CleanEvent)], rejected: [Rejection], flagged: [String: Int], fields: [String: Int]) {
        var kept: [(index: Int, event: CleanEvent)] = []
        var rejected: [Rejection] = []
        var flagged: [String: Int] = [:]
        var fields: [String: Int] = [:]
        for (index, original) in events {
            var event = original
            var reasons: [String] = []
            func check(_ field: String, item: String, _ value: Double) -> Double {
                guard case .outlier(let bound) = judge(field: field, category: categories[item] ?? "", value: value) else { return value }
                flagged[event.source, default: 0] += 1
                fields[field, default: 0] += 1
                reasons.append("\(field) \(value) is an outlier for its category (fence \(String(format: "%.4g", bound)))")
                event.cappedFields.append(field)
                return policy.action == .cap ? bound : value
            }
            switch event.kind {
            case .pageView:
                if let item = event.fields["item"]?.stringValue, let dwell = event.fields["dwell_ms"]?.numberValue {
                    event.fields["dwell_ms"] = .number(check("dwell_ms", item: item, dwell))
                }
            case .feedback:
                if event.fields["signal"]?.stringValue == InteractionKind.dwell.rawValue, let item = event.fields["item"]?.stringValue,
                    let dwell = event.fields["value"]?.numberValue
                {
                    event.fields["value"] = .number(check("dwell_ms", item: item, dwell))
                }
            case .purchase:
                guard let value = event.fields["lines"], case FieldValue.list(let lines) = value else { break }
                var screenedLines: [FieldValue] = []
                for line in lines {
                    guard case FieldValue.object(var l) = line, let item = l["item"]?.stringValue else {
                        screenedLines.append(line)
                        continue
                    }
                    if let q = l["quantity"]?.numberValue { l["quantity"] = .number(check("quantity", item: item, q).rounded()) }
                    if let p = l["unit_price"]?.numberValue { l["unit_price"] = .number(check("unit_price", item: item, p)) }
                    screenedLines.append(.object(l))
                }
                event.fields["lines"] = .list(screenedLines)
            case .search, .profile:
                break
            }
            if policy.action == .exclude && !reasons.isEmpty {
                rejected.append(Rejection(index: index, reason: "excluded as an outlier: " + reasons.joined(separator: "; "), source: event.source))
            } else {
                kept.append((index, event))
            }
        }
        return (kept, rejected, flagged, fields)
    }
}

extension OutlierDetector.Reservoir {
    mutating func add(_ x: Double, capacity: Int) {
        if values.count < capacity { values.append(x) } else { values[next] = x }
        next = (next + 1) % capacity
        seen += 1
        sinceFit += 1
        // Refit on a doubling schedule at first, then every 128 values: cheap, and stable once data flows.
        if statistics == nil || sinceFit >= min(128, max(seen / 2, 1)) {
            statistics = RobustStatistics(values)
            sinceFit = 0
        }
    }
}

extension Double {
    func clamped(min lower: Double) -> Double { Swift.max(self, lower) }
}
