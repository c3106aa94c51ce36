import Foundation
import GRDB
import Storage

/// Per-source ingestion counters, stored durably beside the data they describe so that `veil quality` and the
/// readiness check read the same figures after a restart. A source is the event's `source` channel (`web`,
/// `app`…), never a subject; at most `maxSources` are tracked, the rest count as `other`.
public struct SourceQualityLog: Sendable {
    public static let maxSources = 64

    public struct Migrations: MigrationSet {
        public init() {}
        public func register(in migrator: inout DatabaseMigrator) {
            migrator.registerMigration("sourcequality.v1") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE source_quality (
                            source TEXT PRIMARY KEY NOT NULL,
                            events INTEGER NOT NULL,
                            accepted INTEGER NOT NULL,
                            rejected INTEGER NOT NULL,
                            duplicates INTEGER NOT NULL,
                            outliers INTEGER NOT NULL,
                            completeness_sum REAL NOT NULL,
                            last_event INTEGER
                        ) WITHOUT ROWID;
                        """)
            }
            // The same counters per day (UTC), for the console's charts of the last days.
            migrator.registerMigration("sourcequality.v2.daily") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE source_quality_daily (
                            source TEXT NOT NULL,
                            day INTEGER NOT NULL,
                            events INTEGER NOT NULL,
                            rejected INTEGER NOT NULL,
                            duplicates INTEGER NOT NULL,
                            completeness_sum REAL NOT NULL,
                            PRIMARY KEY (source, day)
                        ) WITHOUT ROWID;
                        """)
            }
        }
    }

    /// One source's counters on one day.
    public struct Day: Sendable, Equatable {
        public var source: String
        /// Days since the epoch (UTC).
        public var day: Int64
        public var events: Int
        public var rejected: Int
        public var duplicates: Int
        public var rejectRate: Double { events == 0 ? 0 : Double(rejected) / Double(events) }
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
    public func record(_ deltas: [String: Delta], day: Int64? = nil, in db: Database) throws {
        var merged: [String: Delta] = [:]
        var tracked: Int?
        for (source, delta) in deltas.sorted(by: { $0.key < $1.key }) {
            // A primary-key probe per source; the table is counted only when a new source appears.
            let known =
                try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM source_quality WHERE source = ?)"), arguments: [source])
                ?? false
            if !known && tracked == nil { tracked = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM source_quality") ?? 0 }
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
        for (source, d) in merged {
            try db.cachedStatement(
                sql: """
                    INSERT INTO source_quality (source, events, accepted, rejected, duplicates, outliers, completeness_sum, last_event)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(source) DO UPDATE SET events = events + excluded.events, accepted = accepted + excluded.accepted,
                        rejected = rejected + excluded.rejected, duplicates = duplicates + excluded.duplicates,
                        outliers = outliers + excluded.outliers, completeness_sum = completeness_sum + excluded.completeness_sum,
                        last_event = MAX(COALESCE(last_event, excluded.last_event), COALESCE(excluded.last_event, last_event))
                    """
            ).execute(arguments: [source, d.events, d.accepted, d.rejected, d.duplicates, d.outliers, d.completenessSum, d.lastEvent])
            guard let day else { continue }
            try db.cachedStatement(
                sql: """
                    INSERT INTO source_quality_daily (source, day, events, rejected, duplicates, completeness_sum) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT(source, day) DO UPDATE SET events = events + excluded.events, rejected = rejected + excluded.rejected,
                        duplicates = duplicates + excluded.duplicates, completeness_sum = completeness_sum + excluded.completeness_sum
                    """
            ).execute(arguments: [source, day, d.events, d.rejected, d.duplicates, d.completenessSum])
        }
    }

    /// Every source's counters per day from `since` (days since the epoch) on, oldest first.
    public func days(since: Int64, in db: Database) throws -> [Day] {
        try GRDB.Row.fetchAll(
            db, sql: "SELECT source, day, events, rejected, duplicates FROM source_quality_daily WHERE day >= ? ORDER BY source, day",
            arguments: [since]
        ).map { Day(source: $0["source"], day: $0["day"], events: $0["events"], rejected: $0["rejected"], duplicates: $0["duplicates"]) }
    }

    public func rows(in db: Database) throws -> [Row] {
        try GRDB.Row.fetchAll(db, sql: "SELECT * FROM source_quality ORDER BY source").map { r in
            let events: Int = r["events"], rejected: Int = r["rejected"]
            let valid = events - rejected
            return Row(
                source: r["source"], events: events, accepted: r["accepted"], rejected: rejected, duplicates: r["duplicates"],
                outliers: r["outliers"], completeness: valid > 0 ? (r["completeness_sum"] as Double) / Double(valid) : 1,
                lastEvent: r["last_event"])
        }
    }
}
