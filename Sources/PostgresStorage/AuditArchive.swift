import Foundation
import NIOCore
import Persistence
import PostgresNIO
import Storage
import Synchronization

/// Every gateway's audit log in the shared database (``AuditArchive``): entries in `audit_archive`, one row each, with
/// the columns a compliance query filters on indexed; heads in `audit_archive_heads`.
struct PostgresAuditArchive: AuditArchive {
    let store: PostgresStore

    /// The class id of the per-log advisory locks (the other key is the log name's hash).
    static let logLockClass: Int32 = 0x7665_696C
    /// Serializes shipments (transaction-scoped), not the operational writers.
    static let shippingLock: Int64 = 0x7665_696C_0005

    func retract(log: String, after size: Int64) async throws {
        try await PostgresStore.offThread { [store] in
            try store.unserializedWrite { tx in
                try tx.run("SELECT pg_advisory_xact_lock(\(Self.shippingLock))")
                try tx.run("DELETE FROM audit_archive WHERE log = \(log) AND seq > \(size)")
                try tx.run("DELETE FROM audit_archive_heads WHERE log = \(log) AND size > \(size)")
            }
        }
    }

    func claim(log: String) async throws {
        try await PostgresStore.offThread { [store] in try store.claimLog(log) }
    }

    func shipped(log: String) async throws -> (sequence: Int64, hash: String?, headSize: Int64) {
        try await store.read { tx in
            let last = try tx.rows("SELECT seq, hash FROM audit_archive WHERE log = \(log) ORDER BY seq DESC LIMIT 1").first.map {
                try $0.decode((Int64, String).self)
            }
            let head = try tx.value("SELECT MAX(size) FROM audit_archive_heads WHERE log = \(log)", as: Int64?.self) ?? nil
            return (last?.0 ?? 0, last?.1, head ?? 0)
        }
    }

    func ship(entries: [ArchivedAuditEntry], heads: [ArchivedAuditHead]) async throws {
        guard !entries.isEmpty || !heads.isEmpty else { return }
        try await PostgresStore.offThread { [store] in
            try store.unserializedWrite { tx in
                // Positions are taken in the order shipments commit: a query paging by position never passes a row
                // that a slower shipment commits later with a smaller one.
                try tx.run("SELECT pg_advisory_xact_lock(\(Self.shippingLock))")
                // One statement per batch (arrays unnested), not one round trip per entry.
                for batch in stride(from: 0, to: entries.count, by: 1000).map({ entries[$0..<min($0 + 1000, entries.count)] }) {
                    try tx.run(
                        """
                        INSERT INTO audit_archive (log, seq, at, actor, action, outcome, subject_token, hash, body)
                        SELECT log, seq, at, actor, action, outcome, NULLIF(token, ''), hash, body
                        FROM unnest(\(batch.map(\.log)), \(batch.map(\.sequence)), \(batch.map(\.at)), \(batch.map(\.actor)),
                            \(batch.map(\.action)), \(batch.map(\.outcome)), \(batch.map { $0.subjectToken ?? "" }), \(batch.map(\.hash)),
                            \(batch.map { ByteBuffer(bytes: $0.body) }))
                            AS shipped (log, seq, at, actor, action, outcome, token, hash, body)
                        ORDER BY log, seq
                        ON CONFLICT (log, seq) DO NOTHING
                        """)
                }
                for head in heads {
                    try tx.run(
                        """
                        INSERT INTO audit_archive_heads (log, size, at, note) VALUES (\(head.log), \(head.size), \(head.at), \(head.note))
                        ON CONFLICT (log, size) DO NOTHING
                        """)
                }
            }
        }
    }

    func logs() async throws -> [String] {
        try await store.read { tx in
            // A skip scan of the (log, seq) index: one probe per log, not a pass over every entry.
            try tx.rows(
                """
                WITH RECURSIVE names (log) AS (
                    (SELECT log FROM audit_archive ORDER BY log LIMIT 1)
                    UNION ALL
                    SELECT (SELECT a.log FROM audit_archive a WHERE a.log > names.log ORDER BY a.log LIMIT 1) FROM names WHERE names.log IS NOT NULL
                )
                SELECT log FROM names WHERE log IS NOT NULL UNION SELECT DISTINCT log FROM audit_archive_heads ORDER BY 1
                """
            ).map { try $0.decode(String.self) }
        }
    }

    private static func entry(_ row: PostgresRow) throws -> ArchivedAuditEntry {
        let (position, log, seq, at, actor, action, outcome, token, hash, body) = try row.decode(
            (Int64, String, Int64, Int64, String, String, String, String?, String, ByteBuffer).self)
        return ArchivedAuditEntry(
            log: log, sequence: seq, at: at, actor: actor, action: action, outcome: outcome, subjectToken: token, hash: hash,
            body: Array(body.readableBytesView), position: position)
    }

    func entries(log: String, after: ArchiveCursor, limit: Int) async throws -> [ArchivedAuditEntry] {
        try await store.read { tx in
            try tx.rows(
                """
                SELECT position, log, seq, at, actor, action, outcome, subject_token, hash, body FROM audit_archive
                WHERE log = \(log) AND (seq, position) > (\(after.sequence), \(after.position))
                ORDER BY seq, position LIMIT \(max(1, min(limit, 10_000)))
                """
            ).map(Self.entry)
        }
    }

    func digests(log: String, through: Int64) async throws -> [String] {
        try await store.read { tx in
            try tx.rows("SELECT hash FROM audit_archive WHERE log = \(log) AND seq >= 1 AND seq <= \(through) ORDER BY seq").map {
                try $0.decode(String.self)
            }
        }
    }

    func heads(log: String) async throws -> [ArchivedAuditHead] {
        try await store.read { tx in
            try tx.rows("SELECT size, at, note FROM audit_archive_heads WHERE log = \(log) ORDER BY size").map {
                let (size, at, note) = try $0.decode((Int64, Int64, String).self)
                return ArchivedAuditHead(log: log, size: size, at: at, note: note)
            }
        }
    }

    func query(_ filter: ArchivedAuditFilter) async throws -> [ArchivedAuditEntry] {
        try await store.read { tx in
            // Every filter is bound; an absent one compares with NULL and lets every row through.
            try tx.rows(
                """
                SELECT position, log, seq, at, actor, action, outcome, subject_token, hash, body FROM audit_archive
                WHERE position > \(filter.after) AND seq >= 1
                    AND EXISTS (SELECT 1 FROM audit_archive_heads h WHERE h.log = audit_archive.log)
                    AND (\(filter.subjectToken)::TEXT IS NULL OR subject_token = \(filter.subjectToken))
                    AND (\(filter.actor)::TEXT IS NULL OR actor = \(filter.actor))
                    AND (\(filter.action)::TEXT IS NULL OR action = \(filter.action))
                    AND (\(filter.outcome)::TEXT IS NULL OR outcome = \(filter.outcome))
                    AND (\(filter.from)::BIGINT IS NULL OR at >= \(filter.from))
                    AND (\(filter.to)::BIGINT IS NULL OR at <= \(filter.to))
                ORDER BY position LIMIT \(max(1, min(filter.limit, 1000)))
                """
            ).map(Self.entry)
        }
    }
}

extension PostgresStore {
    /// Holds `log`'s name for this process (a session lock on a connection of its own, re-taken by the readiness
    /// check after the database restarted); holding it already is fine.
    func claimLog(_ log: String) throws {
        if claimedLog.withLock({ $0 }) == log, logClaim.withLock({ $0.map { !$0.isClosed } ?? false }) { return }
        guard let connection = try holding("SELECT pg_try_advisory_lock(\(PostgresAuditArchive.logLockClass), hashtext(\(log)))") else {
            throw StorageError(
                .cannotOpen,
                "another gateway on \(settings.redacted) already keeps the audit log named '\(log)'; give each gateway an audit.log_name of its own")
        }
        let old = logClaim.withLock { claimed in
            defer { claimed = connection }
            return claimed
        }
        if let old { try? old.close().wait() }
        claimedLog.withLock { $0 = log }
    }

    /// The audit archive of the gateways sharing this database (``AuditArchive``).
    public var auditArchive: (any AuditArchive)? { settings.shared ? PostgresAuditArchive(store: self) : nil }
}
