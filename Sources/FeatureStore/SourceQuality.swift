import Foundation
import Storage

/// Per-source ingestion counters, stored durably beside the data they describe so that `veil quality` and the
/// readiness check read the same figures after a restart. A source is the event's `source` channel (`web`,
/// `app`…), never a subject; at most `maxSources` are tracked, the rest count as `other`.
public struct SourceQualityLog: Sendable {
    public static let maxSources = 64

    /// One source's counters on one day.
    public struct Day: Sendable, Equatable {
        public var source: String
        /// Days since the epoch (UTC).
        public var day: Int64
        public var events: Int
        public var rejected: Int
        public var duplicates: Int
        public var rejectRate: Double { events == 0 ? 0 : Double(rejected) / Double(events) }

        public init(source: String, day: Int64, events: Int, rejected: Int, duplicates: Int) {
            self.source = source
            self.day = day
            self.events = events
            self.rejected = rejected
            self.duplicates = duplicates
        }
    }

    /// What one batch adds to a source's counters.
    public struct Delta: Sendable, Equatable {
        public var events = 0
        public var accepted = 0
        public var rejected = 0
        public var duplicates = 0
        public var outliers = 0
        public var completenessSum = 0.0
        public var lastEvent: Int64?
        public init() {}
    }

    /// A source's counters and the rates derived from them.
    public struct Row: Sendable, Equatable, Codable {
        public var source: String
        public var events: Int
        public var accepted: Int
        public var rejected: Int
        public var duplicates: Int
        public var outliers: Int
        /// Mean share of expected fields present, over the events that passed validation.
        public var completeness: Double
        /// Seconds since the epoch when the source last delivered an accepted event.
        public var lastEvent: Int64?

        public var rejectRate: Double { events == 0 ? 0 : Double(rejected) / Double(events) }
        public var duplicateRate: Double { events == 0 ? 0 : Double(duplicates) / Double(events) }
    }

    public init() {}

    /// Adds a batch's counters; with `day` (days since the epoch), to that day's counters too.
    public func record(_ deltas: [String: Delta], day: Int64? = nil, in tx: some SourceQualityRepository) throws {
        var merged: [String: Delta] = [:]
        var tracked: Int?
        for (source, delta) in deltas.sorted(by: { $0.key < $1.key }) {
            // A probe per source; the sources are counted only when a new one appears.
            let known = try tx.qualitySourceExists(source)
            if !known && tracked == nil { tracked = try tx.qualitySourceCount() }
            let key = known || (tracked ?? 0) + merged.count < Self.maxSources ? source : "other"
            var m = merged[key] ?? Delta()
            m.events += delta.events
            m.accepted += delta.accepted
            m.rejected += delta.rejected
            m.duplicates += delta.duplicates
            m.outliers += delta.outliers
            m.completenessSum += delta.completenessSum
            if let t = delta.lastEvent { m.lastEvent = max(m.lastEvent ?? t, t) }
            merged[key] = m
        }
        for (source, d) in merged { try tx.addQuality(d, source: source, day: day) }
    }

    /// Every source's counters per day from `since` (days since the epoch) on, oldest first.
    public func days(since: Int64, in tx: some SourceQualityRepository) throws -> [Day] {
        try tx.qualityDays(since: since)
    }

    public func rows(in tx: some SourceQualityRepository) throws -> [Row] {
        try tx.qualityTotals().map { source, d in
            let valid = d.events - d.rejected
            return Row(
                source: source, events: d.events, accepted: d.accepted, rejected: d.rejected, duplicates: d.duplicates,
                outliers: d.outliers, completeness: valid > 0 ? d.completenessSum / Double(valid) : 1, lastEvent: d.lastEvent)
        }
    }
}

/// What the per-source counters store, as seen from one transaction of a storage backend.
public protocol SourceQualityRepository {
    func qualitySourceExists(_ source: String) throws -> Bool
    func qualitySourceCount() throws -> Int
    /// Adds `delta` to `source`'s totals and, with `day`, to that day's counters.
    func addQuality(_ delta: SourceQualityLog.Delta, source: String, day: Int64?) throws
    /// Per source and day from `since` on, by source then day.
    func qualityDays(since: Int64) throws -> [SourceQualityLog.Day]
    /// Every source's totals, by source.
    func qualityTotals() throws -> [(source: String, totals: SourceQualityLog.Delta)]
}
