import Foundation
import GRDB
import SQLiteStorage
import Storage
import Synchronization

/// Compliance queries at scale: which entries name a subject token, an actor, or fall in a time range, answered from
/// an index instead of a scan of the whole log.
///
/// The index lives in a file of its own beside the log and is derived data: rebuildable from the log at any time
/// (``reindex()``), never read by verification, and kept off the append path (an index on random tokens inside the
/// log's own transactions makes every append a random page write). It trails the log: ``catchUp(limit:)`` indexes
/// what was appended since, and a query answers from the index up to its watermark and from a scan of the log's tail
/// after it, so answers are complete whatever the lag.
public final class AuditIndex: Sendable {
    struct Migrations: MigrationSet {
        func register(in migrator: inout DatabaseMigrator) {
            migrator.registerMigration("audit-index.v1") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE by_subject (subject_token TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (subject_token, seq)) WITHOUT ROWID;
                        CREATE TABLE by_actor (actor TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (actor, seq)) WITHOUT ROWID;
                        CREATE TABLE time_blocks (block INTEGER PRIMARY KEY, min_at INTEGER NOT NULL, max_at INTEGER NOT NULL);
                        CREATE TABLE watermark (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
                        INSERT INTO watermark (id, seq) VALUES (1, 0);
                        """)
            }
        }
    }

    /// Entries per time block: a time-range query scans the blocks whose earliest and latest times overlap the range
    /// (exact even if the clock stepped back), never the whole log.
    static let blockSize: Int64 = 4096

    let index: Store
    let log: AuditReader
    /// One catch-up at a time (the server's background one and a query's).
    private let catching = Mutex(())

    /// Opens (creating) the index at `path` for the log `log` reads.
    public init(path: String, log: AuditReader) throws {
        index = try Store(path: path, migrations: [Migrations()], configuration: .init(fullSync: false))
        self.log = log
    }

    /// The last entry indexed.
    public var indexedThrough: Int64 {
        get throws { try index.pool.read { try Int64.fetchOne($0, sql: "SELECT seq FROM watermark") ?? 0 } }
    }

    /// Indexes up to `limit` entries appended after the watermark, in batches of 50,000; returns how many.
    @discardableResult
    public func catchUp(limit: Int = .max) throws -> Int {
        try catching.withLock { _ in
            var done = 0
            while done < limit {
                let from = try indexedThrough
                let batch = min(50_000, limit - done)
                let rows = try log.store.pool.read { db in
                    try Row.fetchAll(
                        db, sql: "SELECT seq, at, actor, subject_token FROM entries WHERE seq > ? ORDER BY seq LIMIT ?", arguments: [from, batch]
                    )
                    // Read without trapping on an edited row's types (verify names such a row; the index skips it).
                    .compactMap { row -> (seq: Int64, at: Int64, actor: String, subject: String?)? in
                        guard let seq = Int64.fromDatabaseValue(row[0] as DatabaseValue), let at = Int64.fromDatabaseValue(row[1] as DatabaseValue),
                            let actor = String.fromDatabaseValue(row[2] as DatabaseValue)
                        else { return nil }
                        return (seq, at, actor, String.fromDatabaseValue(row[3] as DatabaseValue))
                    }
                }
                guard let last = rows.last else { break }
                try index.pool.write { db in
                    // Sorted by key, so that each B-tree page is written once per batch rather than once per row.
                    let subjects = rows.compactMap { row in row.subject.map { ($0, row.seq) } }.sorted { $0 < $1 }
                    let bySubject = try db.cachedStatement(sql: "INSERT OR IGNORE INTO by_subject (subject_token, seq) VALUES (?, ?)")
                    for (token, seq) in subjects { try bySubject.execute(arguments: [token, seq]) }
                    let byActor = try db.cachedStatement(sql: "INSERT OR IGNORE INTO by_actor (actor, seq) VALUES (?, ?)")
                    for (actor, seq) in rows.map({ ($0.actor, $0.seq) }).sorted(by: { $0 < $1 }) { try byActor.execute(arguments: [actor, seq]) }
                    var blocks: [Int64: (Int64, Int64)] = [:]
                    for row in rows {
                        let block = (row.seq - 1) / Self.blockSize
                        let (lo, hi) = blocks[block] ?? (row.at, row.at)
                        blocks[block] = (min(lo, row.at), max(hi, row.at))
                    }
                    let time = try db.cachedStatement(
                        sql: """
                            INSERT INTO time_blocks (block, min_at, max_at) VALUES (?, ?, ?)
                            ON CONFLICT (block) DO UPDATE SET min_at = min(min_at, excluded.min_at), max_at = max(max_at, excluded.max_at)
                            """)
                    for (block, (lo, hi)) in blocks { try time.execute(arguments: [block, lo, hi]) }
                    try db.execute(sql: "UPDATE watermark SET seq = ?", arguments: [last.seq])
                }
                done += rows.count
                if rows.count < batch { break }
            }
            return done
        }
    }

    /// Empties the index and rebuilds it from the log; returns the entries indexed.
    @discardableResult
    public func reindex() throws -> Int {
        try reset()
        return try catchUp()
    }

    func reset() throws {
        try catching.withLock { _ in
            try index.pool.write { db in
                try db.execute(sql: "DELETE FROM by_subject; DELETE FROM by_actor; DELETE FROM time_blocks; UPDATE watermark SET seq = 0")
            }
        }
    }

    /// The entries matching `q`, in sequence order, as ``AuditReader/query(_:)`` returns them, from the index where a
    /// filter on subject, actor or time allows it.
    public func query(_ q: AuditQuery) throws -> [AuditEntry] {
        try query(q, catchUpLimit: 100_000)
    }

    /// - Parameter catchUpLimit: entries to index first (a query sees what was appended a moment ago through the tail
    ///   scan; this only keeps the tail short). Tests pass 0 to query an index that lags.
    func query(_ q: AuditQuery, catchUpLimit: Int) throws -> [AuditEntry] {
        if catchUpLimit > 0 { try catchUp(limit: catchUpLimit) }
        let limit = max(1, min(q.limit, 1000))
        let watermark = try indexedThrough
        var out: [AuditEntry] = []
        if q.after < watermark {
            if let token = q.subjectToken {
                out = try viaKey(table: "by_subject", column: "subject_token", key: token, q, through: watermark, limit: limit)
            } else if let actor = q.actor {
                out = try viaKey(table: "by_actor", column: "actor", key: actor, q, through: watermark, limit: limit)
            } else if q.from != nil || q.to != nil {
                out = try viaTime(q, through: watermark, limit: limit)
            } else {
                return try log.query(q)  // no filter an index serves: one scan, as before
            }
        }
        if out.count < limit {
            var tail = q
            tail.after = max(q.after, watermark)
            tail.limit = limit - out.count
            out += try log.query(tail)
        }
        return out
    }

    /// Sequence numbers from the index for one key, then the entries from the log, filtered by the rest of `q`.
    private func viaKey(table: String, column: String, key: String, _ q: AuditQuery, through watermark: Int64, limit: Int) throws -> [AuditEntry] {
        var out: [AuditEntry] = []
        var cursor = q.after
        while out.count < limit, cursor < watermark {
            let page = try index.pool.read { db in
                try Int64.fetchAll(
                    db, sql: "SELECT seq FROM \(table) WHERE \(column) = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                    arguments: [key, cursor, watermark, max(limit * 2, 256)])
            }
            guard let last = page.last else { break }
            let entries = try log.store.pool.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT \(AuditReader.columns) FROM entries WHERE seq IN (\(page.map(String.init).joined(separator: ","))) ORDER BY seq"
                )
                .map(AuditReader.entryByIndex)
            }
            for e in entries where Self.matches(e, q) {
                out.append(e)
                if out.count == limit { break }
            }
            cursor = last
        }
        return out
    }

    /// The log scanned only over the blocks whose times overlap the range.
    private func viaTime(_ q: AuditQuery, through watermark: Int64, limit: Int) throws -> [AuditEntry] {
        let blocks = try index.pool.read { db in
            try Int64.fetchAll(
                db, sql: "SELECT block FROM time_blocks WHERE max_at >= ? AND min_at <= ? AND block >= ? ORDER BY block",
                arguments: [q.from ?? Int64.min, q.to ?? Int64.max, max(0, q.after / Self.blockSize)])
        }
        var out: [AuditEntry] = []
        for block in blocks {
            var part = q
            part.after = max(q.after, block * Self.blockSize)
            part.limit = limit - out.count
            let upper = min((block + 1) * Self.blockSize, watermark)
            guard part.after < upper else { continue }
            out += try log.query(part, through: upper)
            if out.count >= limit { break }
        }
        return out
    }

    static func matches(_ e: AuditEntry, _ q: AuditQuery) -> Bool {
        if let actor = q.actor, e.record.actor != actor { return false }
        if let token = q.subjectToken, e.record.subjectToken != token { return false }
        if let action = q.action, e.record.action != action { return false }
        if let outcome = q.outcome, e.record.outcome != outcome.rawValue { return false }
        if let from = q.from, e.at < from { return false }
        if let to = q.to, e.at > to { return false }
        return e.sequence > q.after
    }
}
