import FeatureStore
import Foundation
import GRDB
import Storage

/// The feature store's tables: sealed interactions and profiles by token, the catalog, anonymous daily counts.
public struct FeatureTables: MigrationSet {
    public init() {}
    public func register(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("featurestore.v1") { db in
            try db.execute(
                sql: """
                    -- Keyed by (token, id): a subject's rows share pages, so a batch touches few pages.
                    CREATE TABLE interactions (
                        token TEXT NOT NULL,
                        id TEXT NOT NULL,
                        day INTEGER NOT NULL,
                        body BLOB NOT NULL,
                        PRIMARY KEY (token, id)
                    ) WITHOUT ROWID;
                    CREATE INDEX interactions_day ON interactions(day);
                    CREATE TABLE profiles (
                        token TEXT PRIMARY KEY NOT NULL,
                        body BLOB NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE items (
                        id TEXT PRIMARY KEY NOT NULL,
                        body TEXT NOT NULL,
                        available INTEGER NOT NULL,
                        updated_at INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE item_daily_counts (
                        item TEXT NOT NULL,
                        day INTEGER NOT NULL,
                        count INTEGER NOT NULL,
                        PRIMARY KEY (item, day)
                    ) WITHOUT ROWID;
                    """)
        }
        // Which rows a withdrawal already took out of the anonymous counts (see uncountAnonymous(of:in:)).
        migrator.registerMigration("featurestore.v2.uncounted") { db in
            try db.execute(sql: "ALTER TABLE interactions ADD COLUMN uncounted INTEGER NOT NULL DEFAULT 0")
        }
    }
}

extension Database: FeatureRepository {
    public func insertInteraction(id: String, token: String, day: Int64, body: [UInt8]) throws -> Bool {
        try cachedStatement(sql: "INSERT OR IGNORE INTO interactions (id, token, day, body) VALUES (?, ?, ?, ?)")
            .execute(arguments: [id, token, day, Data(body)])
        return changesCount == 1
    }

    public func interactionRows(token: String, uncountedOnly: Bool) throws -> [(id: String, body: [UInt8])] {
        let sql =
            uncountedOnly
            ? "SELECT id, body FROM interactions WHERE token = ? AND uncounted = 0" : "SELECT id, body FROM interactions WHERE token = ?"
        return try Row.fetchAll(cachedStatement(sql: sql), arguments: [token]).map { ($0["id"], Array($0["body"] as Data)) }
    }

    public func markUncounted(token: String, id: String) throws -> Bool {
        try cachedStatement(sql: "UPDATE interactions SET uncounted = 1 WHERE token = ? AND id = ? AND uncounted = 0").execute(arguments: [token, id])
        return changesCount == 1
    }

    public func interactionTokens() throws -> [String] {
        try String.fetchAll(self, sql: "SELECT DISTINCT token FROM interactions ORDER BY token")
    }

    public func deleteInteractions(beforeDay day: Int64) throws -> Int {
        try cachedStatement(sql: "DELETE FROM interactions WHERE day < ?").execute(arguments: [day])
        return changesCount
    }

    public func setProfile(token: String, body: [UInt8]) throws {
        try cachedStatement(sql: "INSERT OR REPLACE INTO profiles (token, body) VALUES (?, ?)").execute(arguments: [token, Data(body)])
    }

    public func profile(token: String) throws -> [UInt8]? {
        try Data.fetchOne(cachedStatement(sql: "SELECT body FROM profiles WHERE token = ?"), arguments: [token]).map { Array($0) }
    }

    public func deleteSubjectRows(token: String) throws -> Int {
        try cachedStatement(sql: "DELETE FROM interactions WHERE token = ?").execute(arguments: [token])
        var deleted = changesCount
        try cachedStatement(sql: "DELETE FROM profiles WHERE token = ?").execute(arguments: [token])
        deleted += changesCount
        return deleted
    }

    public func subjectHasRows(token: String) throws -> Bool {
        try Bool.fetchOne(
            cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM interactions WHERE token = ?) OR EXISTS(SELECT 1 FROM profiles WHERE token = ?)"),
            arguments: [token, token]) ?? false
    }

    public func addAnonymousCount(item: String, day: Int64, count: Int) throws {
        try cachedStatement(
            sql: """
                INSERT INTO item_daily_counts (item, day, count) VALUES (?, ?, ?)
                ON CONFLICT(item, day) DO UPDATE SET count = count + excluded.count
                """
        ).execute(arguments: [item, day, count])
    }

    public func subtractAnonymousCount(item: String, day: Int64, count: Int) throws {
        try cachedStatement(sql: "UPDATE item_daily_counts SET count = MAX(count - ?, 0) WHERE item = ? AND day = ?").execute(arguments: [
            count, item, day,
        ])
        try cachedStatement(sql: "DELETE FROM item_daily_counts WHERE item = ? AND day = ? AND count = 0").execute(arguments: [item, day])
    }

    public func anonymousTotals() throws -> [(item: String, count: Int64)] {
        try Row.fetchAll(self, sql: "SELECT item, SUM(count) AS n FROM item_daily_counts GROUP BY item").map { ($0["item"], $0["n"]) }
    }

    public func anonymousCounts(sinceDay: Int64) throws -> [(item: String, day: Int64, count: Int64)] {
        try Row.fetchAll(cachedStatement(sql: "SELECT item, day, count FROM item_daily_counts WHERE day >= ?"), arguments: [sinceDay]).map {
            ($0["item"], $0["day"], $0["count"])
        }
    }

    public func setCatalogItem(id: String, body: String, available: Bool, updatedAt: Int64) throws {
        try cachedStatement(sql: "INSERT OR REPLACE INTO items (id, body, available, updated_at) VALUES (?, ?, ?, ?)")
            .execute(arguments: [id, body, available, updatedAt])
    }

    public func catalogBodies() throws -> [String] {
        try String.fetchAll(self, sql: "SELECT body FROM items ORDER BY id")
    }

    public func catalogItemIDs() throws -> [String] {
        try String.fetchAll(self, sql: "SELECT id FROM items ORDER BY id")
    }
}

/// The delivery log's table: keyed hashes of event ids and contents under each subject's token.
public struct DeliveryTables: MigrationSet {
    public init() {}
    public func register(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("featurestore.v1.deliveries") { db in
            try db.execute(
                sql: """
                    -- Both the event-id hash and the content fingerprint are keys under the subject's token,
                    -- so a delivery check reads and writes the subject's page only.
                    CREATE TABLE deliveries (
                        token TEXT NOT NULL,
                        key TEXT NOT NULL,
                        at INTEGER NOT NULL,
                        PRIMARY KEY (token, key)
                    ) WITHOUT ROWID;
                    """)
        }
    }
}

extension Database: DeliveryRepository {
    public func recordDelivery(token: String, key: String, at: Int64) throws -> Bool {
        try cachedStatement(sql: "INSERT OR IGNORE INTO deliveries (token, key, at) VALUES (?, ?, ?)").execute(arguments: [token, key, at])
        return changesCount == 1
    }

    public func deliveryRecorded(token: String, anyOf keys: [String]) throws -> Bool {
        guard !keys.isEmpty else { return false }
        let marks = Array(repeating: "?", count: keys.count).joined(separator: ", ")
        return try Bool.fetchOne(
            cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM deliveries WHERE token = ? AND key IN (\(marks)))"),
            arguments: StatementArguments([token] + keys)) ?? false
    }

    public func deleteDelivery(token: String, key: String) throws {
        try cachedStatement(sql: "DELETE FROM deliveries WHERE token = ? AND key = ?").execute(arguments: [token, key])
    }

    public func deleteDeliveries(token: String) throws {
        try cachedStatement(sql: "DELETE FROM deliveries WHERE token = ?").execute(arguments: [token])
    }

    public func deleteDeliveries(before cutoff: Int64) throws -> Int {
        try cachedStatement(sql: "DELETE FROM deliveries WHERE at < ?").execute(arguments: [cutoff])
        return changesCount
    }

    public func deliveriesRecorded(withPrefixes prefixes: [String]) throws -> Bool {
        guard !prefixes.isEmpty else { return false }
        let marks = Array(repeating: "?", count: prefixes.count).joined(separator: ", ")
        return try Bool.fetchOne(
            self, sql: "SELECT EXISTS(SELECT 1 FROM deliveries WHERE substr(key, 1, 2) IN (\(marks)))",
            arguments: StatementArguments(prefixes.map { String($0.prefix(2)) })) ?? false
    }
}

/// Per-source ingestion counters: totals and per day.
public struct SourceQualityTables: MigrationSet {
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

extension Database: SourceQualityRepository {
    public func qualitySourceExists(_ source: String) throws -> Bool {
        try Bool.fetchOne(cachedStatement(sql: "SELECT EXISTS(SELECT 1 FROM source_quality WHERE source = ?)"), arguments: [source]) ?? false
    }

    public func qualitySourceCount() throws -> Int {
        try Int.fetchOne(self, sql: "SELECT COUNT(*) FROM source_quality") ?? 0
    }

    public func addQuality(_ d: SourceQualityLog.Delta, source: String, day: Int64?) throws {
        try cachedStatement(
            sql: """
                INSERT INTO source_quality (source, events, accepted, rejected, duplicates, outliers, completeness_sum, last_event)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(source) DO UPDATE SET events = events + excluded.events, accepted = accepted + excluded.accepted,
                    rejected = rejected + excluded.rejected, duplicates = duplicates + excluded.duplicates,
                    outliers = outliers + excluded.outliers, completeness_sum = completeness_sum + excluded.completeness_sum,
                    last_event = MAX(COALESCE(last_event, excluded.last_event), COALESCE(excluded.last_event, last_event))
                """
        ).execute(arguments: [source, d.events, d.accepted, d.rejected, d.duplicates, d.outliers, d.completenessSum, d.lastEvent])
        guard let day else { return }
        try cachedStatement(
            sql: """
                INSERT INTO source_quality_daily (source, day, events, rejected, duplicates, completeness_sum) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(source, day) DO UPDATE SET events = events + excluded.events, rejected = rejected + excluded.rejected,
                    duplicates = duplicates + excluded.duplicates, completeness_sum = completeness_sum + excluded.completeness_sum
                """
        ).execute(arguments: [source, day, d.events, d.rejected, d.duplicates, d.completenessSum])
    }

    public func qualityDays(since: Int64) throws -> [SourceQualityLog.Day] {
        try Row.fetchAll(
            self, sql: "SELECT source, day, events, rejected, duplicates FROM source_quality_daily WHERE day >= ? ORDER BY source, day",
            arguments: [since]
        ).map {
            SourceQualityLog.Day(source: $0["source"], day: $0["day"], events: $0["events"], rejected: $0["rejected"], duplicates: $0["duplicates"])
        }
    }

    public func qualityTotals() throws -> [(source: String, totals: SourceQualityLog.Delta)] {
        try Row.fetchAll(self, sql: "SELECT * FROM source_quality ORDER BY source").map { r in
            var d = SourceQualityLog.Delta()
            d.events = r["events"]
            d.accepted = r["accepted"]
            d.rejected = r["rejected"]
            d.duplicates = r["duplicates"]
            d.outliers = r["outliers"]
            d.completenessSum = r["completeness_sum"]
            d.lastEvent = r["last_event"]
            return (r["source"], d)
        }
    }
}
