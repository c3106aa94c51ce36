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

/// Each source's ingestion counters judged against the thresholds: the report, the console's charts, and a watch
/// that logs a source crossing a threshold or recovering.
public final class DataQualityMonitor: Sendable {
    let store: any OperationalStore
    let sourceQuality: SourceQualityLog
    let thresholds: QualityThresholds
    let metrics: VeilMetrics
    let logger: Logger
    let now: @Sendable () -> Date
    private let watched = Mutex<(lastCheck: Date, unhealthy: Set<String>)>((.distantPast, []))

    init(
        store: any OperationalStore, sourceQuality: SourceQualityLog, thresholds: QualityThresholds, metrics: VeilMetrics, logger: Logger,
        now: @escaping @Sendable () -> Date
    ) {
        self.store = store
        self.sourceQuality = sourceQuality
        self.thresholds = thresholds
        self.metrics = metrics
        self.logger = logger
        self.now = now
    }

    /// Each source's counters per day over the last `days` days (UTC), for the console's charts.
    public func days(_ days: Int) async throws -> [SourceQualityLog.Day] {
        let since = Int64(now().timeIntervalSince1970) / 86_400 - Int64(days - 1)
        let sourceQuality = self.sourceQuality
        return try await store.read { try sourceQuality.days(since: since, in: $0) }
    }

    /// The data-quality report of every source, from the durable counters.
    public func report() async throws -> DataQualityReport {
        let sourceQuality = self.sourceQuality
        let rows = try await store.read { try sourceQuality.rows(in: $0) }
        let report = DataQualityReport(rows: rows, thresholds: thresholds, now: now())
        metrics.recordQuality(report)
        return report
    }

    /// Re-judges quality at most once a second (and always when `force`), logging a warning for every source
    /// that newly crosses a threshold and a notice when it recovers. Returns the report.
    @discardableResult
    public func watch(force: Bool = false) async -> DataQualityReport? {
        let at = now()
        let due = watched.withLock { state -> Bool in
            guard force || at.timeIntervalSince(state.lastCheck) >= 1 else { return false }
            state.lastCheck = at
            return true
        }
        guard due, let report = try? await report() else { return nil }
        let bad = Dictionary(uniqueKeysWithValues: report.sources.filter { !$0.problems.isEmpty }.map { ($0.source, $0.problems) })
        let previously = watched.withLock { state in
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
}
