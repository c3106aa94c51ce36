import FeatureStore
import Foundation
import Ingestion
import Logging
import Pseudonymization
import Prometheus
import Persistence
import Storage
import Synchronization

/// Judges each source's ingestion counters against the configured thresholds.
public struct DataQualityReport: Sendable, Codable, Equatable {
    public struct Source: Sendable, Codable, Equatable {
        public var source: String
        public var events: Int
        public var freshnessSeconds: Double?
        public var completeness: Double
        public var rejectRate: Double
        public var duplicateRate: Double
        public var outliers: Int
        /// Thresholds crossed, in words; empty when the source is healthy.
        public var problems: [String]
    }

    public var sources: [Source]
    public var healthy: Bool { sources.allSatisfy { $0.problems.isEmpty } }

    public init(rows: [SourceQualityLog.Row], thresholds: QualityThresholds, now: Date) {
        sources = rows.map { row in
            let freshness = row.lastEvent.map { max(0, now.timeIntervalSince1970 - Double($0)) }
            var problems: [String] = []
            if let freshness, freshness > thresholds.maxStaleness {
                problems.append("stale: last event \(Int(freshness)) s ago (limit \(Int(thresholds.maxStaleness)) s)")
            }
            if row.events >= thresholds.minEvents {
                if row.rejectRate > thresholds.maxRejectRate {
                    problems.append("reject rate \(Self.percent(row.rejectRate)) above \(Self.percent(thresholds.maxRejectRate))")
                }
                if row.duplicateRate > thresholds.maxDuplicateRate {
                    problems.append("duplicate rate \(Self.percent(row.duplicateRate)) above \(Self.percent(thresholds.maxDuplicateRate))")
                }
                if row.completeness < thresholds.minCompleteness {
                    problems.append("completeness \(Self.percent(row.completeness)) below \(Self.percent(thresholds.minCompleteness))")
                }
            }
            return Source(
                source: row.source, events: row.events, freshnessSeconds: freshness, completeness: row.completeness,
                rejectRate: row.rejectRate, duplicateRate: row.duplicateRate, outliers: row.outliers, problems: problems)
        }
    }

    static func percent(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }
}

extension VeilService {
    /// Each source's counters per day over the last `days` days (UTC), for the console's charts.
    public func qualityDays(_ days: Int) async throws -> [SourceQualityLog.Day] {
        let since = Int64(now().timeIntervalSince1970) / 86_400 - Int64(days - 1)
        return try await store.read { try sourceQuality.days(since: since, in: $0) }
    }

    /// The data-quality report of every source, from the durable counters.
    public func qualityReport() async throws -> DataQualityReport {
        let rows = try await store.read { try sourceQuality.rows(in: $0) }
        let report = DataQualityReport(rows: rows, thresholds: quality, now: now())
        metrics.recordQuality(report)
        return report
    }

    /// Re-judges quality at most once a second (and always when `force`), logging a warning for every source
    /// that newly crosses a threshold and a notice when it recovers. Returns the report.
    @discardableResult
    public func watchQuality(force: Bool = false) async -> DataQualityReport? {
        let at = now()
        let due = qualityWatch.withLock { state -> Bool in
            guard force || at.timeIntervalSince(state.lastCheck) >= 1 else { return false }
            state.lastCheck = at
            return true
        }
        guard due, let report = try? await qualityReport() else { return nil }
        let bad = Dictionary(uniqueKeysWithValues: report.sources.filter { !$0.problems.isEmpty }.map { ($0.source, $0.problems) })
        let previously = qualityWatch.withLock { state in
            defer { state.unhealthy = Set(bad.keys) }
            return state.unhealthy
        }
        for (source, problems) in bad where !previously.contains(source) {
            logger.warning("data quality threshold crossed", metadata: ["source": "\(source)", "problems": "\(problems.joined(separator: "; "))"])
        }
        for source in previously where bad[source] == nil {
            logger.notice("data quality recovered", metadata: ["source": "\(source)"])
        }
        return report
    }

    /// Finds numeric outliers per item category and applies the configured action. Returns the events to keep,
    /// the rejections the action added, and the number of flagged values per source.
    func screenOutliers(
        _ events: [(index: Int, event: CleanEvent)]
    ) -> (kept: [(index: Int, event: CleanEvent)], rejected: [Rejection], flagged: [String: Int]) {
        let policy = outliers.policy
        var kept: [(index: Int, event: CleanEvent)] = []
        var rejected: [Rejection] = []
        var flagged: [String: Int] = [:]
        let categories = catalogCategories()
        for (index, original) in events {
            var event = original
            var reasons: [String] = []
            func screen(_ field: String, item: String, _ value: Double) -> Double {
                guard case .outlier(let bound) = outliers.judge(field: field, category: categories[item] ?? "", value: value) else { return value }
                flagged[event.source, default: 0] += 1
                metrics.outliers(field: field, action: policy.action.rawValue).increment()
                reasons.append("\(field) \(value) is an outlier for its category (fence \(String(format: "%.4g", bound)))")
                event.cappedFields.append(field)
                return policy.action == .cap ? bound : value
            }
            switch event.kind {
            case .pageView:
                if let item = event.fields["item"]?.stringValue, let dwell = event.fields["dwell_ms"]?.numberValue {
                    event.fields["dwell_ms"] = .number(screen("dwell_ms", item: item, dwell))
                }
            case .feedback:
                if event.fields["signal"]?.stringValue == "dwell", let item = event.fields["item"]?.stringValue,
                    let dwell = event.fields["value"]?.numberValue
                {
                    event.fields["value"] = .number(screen("dwell_ms", item: item, dwell))
                }
            case .purchase:
                guard let value = event.fields["lines"], case FieldValue.list(let lines) = value else { break }
                var screenedLines: [FieldValue] = []
                for line in lines {
                    guard case FieldValue.object(var l) = line, let item = l["item"]?.stringValue else {
                        screenedLines.append(line)
                        continue
                    }
                    if let q = l["quantity"]?.numberValue { l["quantity"] = .number(screen("quantity", item: item, q).rounded()) }
                    if let p = l["unit_price"]?.numberValue { l["unit_price"] = .number(screen("unit_price", item: item, p)) }
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
        return (kept, rejected, flagged)
    }
}
