import Foundation
import Vault

/// The audit log as the core, the edge and the commands of a running gateway use it, whatever engine keeps it:
/// durable appends, signed tree heads, and the reads a compliance officer makes (queries, proofs, export,
/// verification). ``SQLiteAuditTrail`` is the engine Veil ships; another plugs in here without touching its callers,
/// which never see a database.
public protocol AuditTrail: AnyObject, Sendable {
    /// Appends one entry and returns it once it is durable.
    @discardableResult
    func append(_ record: AuditRecord) async throws -> AuditEntry
    /// Signs a head over every entry so far unless the newest covers them or is younger than `minimumInterval`;
    /// nil for an empty log.
    @discardableResult
    func checkpoint(minimumInterval: Duration) async throws -> AuditCheckpoint?
    /// Signs a head of the first `size` entries unless one exists (``AuditLog/checkpoint(size:)``); nil when the log
    /// holds fewer entries.
    @discardableResult
    func checkpoint(size: Int64) async throws -> AuditCheckpoint?
    /// The number of entries.
    var count: Int64 { get }
    /// The number of entries known durable (``AuditLog/durableCount``).
    var durableCount: Int64 { get }
    /// How appends were grouped since the log was opened.
    var stats: AuditStats { get }
    /// The entries matching `query`, in sequence order.
    func query(_ query: AuditQuery) throws -> [AuditEntry]
    /// Brings the query index up to the log (blocking); returns the entries it indexed.
    @discardableResult
    func catchUpIndex() throws -> Int
    /// The newest signed head.
    func newestCheckpoint() throws -> AuditCheckpoint?
    /// Up to `limit` entries after sequence number `after`, in order, read from the log itself (shipping copies them).
    func entries(after: Int64, limit: Int) throws -> [AuditEntry]
    /// The signed heads larger than `size`, smallest first.
    func checkpoints(after size: Int64) throws -> [AuditCheckpoint]
    /// The inclusion proof of entry `sequence` in the tree of `treeSize` entries (the newest head's by default).
    func inclusionProof(sequence: Int64, treeSize: Int64?) throws -> AuditInclusionProof
    /// The consistency proof between the trees of `from` and `to` entries (the newest head's by default).
    func consistencyProof(from: Int64, to: Int64?) throws -> AuditConsistencyProof
    /// Every entry and head as JSON lines.
    func exportJSONLines() throws -> [UInt8]
    /// Verifies the whole log with its own signing key, and against `trustedHeads` kept from before (signed notes;
    /// `verifier` when another key signed them).
    func verify(trustedHeads: [String], verifier: NoteVerifier?) throws -> AuditVerification
}

extension AuditTrail {
    /// Signs a head over every entry so far (at shutdown, before an export).
    @discardableResult
    public func checkpoint() async throws -> AuditCheckpoint? { try await checkpoint(minimumInterval: .zero) }
}

/// The audit log in SQLite: the append-only log (``AuditLog``), read through ``AuditReader`` and queried through its
/// derived ``AuditIndex`` in a file of its own.
public final class SQLiteAuditTrail: AuditTrail {
    let log: AuditLog
    let reader: AuditReader
    let index: AuditIndex
    private let publicKey: SigningPublicKey
    private let logName: String?

    /// Opens (creating) the log at `path` and its query index at `indexPath`; `logName` names this gateway's log in
    /// its signed heads when several share a key (``HeadSigner/defaultOrigin(for:logName:)``); the other parameters
    /// are ``AuditLog``'s.
    public init(
        path: String, indexPath: String, signer: SigningKeyPair, logName: String? = nil,
        checkpointInterval: Int64 = AuditLog.defaultCheckpointInterval,
        checkpointMaxAge: Duration? = AuditLog.defaultCheckpointMaxAge, fullSync: Bool = true,
        now: @escaping @Sendable () -> Date = Date.init
    ) throws {
        log = try AuditLog(
            path: path, signer: signer, origin: HeadSigner.defaultOrigin(for: signer.publicKey, logName: logName),
            checkpointInterval: checkpointInterval, checkpointMaxAge: checkpointMaxAge, fullSync: fullSync, now: now)
        reader = AuditReader(store: log.store)
        index = try AuditIndex(path: indexPath, log: reader)
        publicKey = signer.publicKey
        self.logName = logName
    }

    @discardableResult
    public func append(_ record: AuditRecord) async throws -> AuditEntry { try await log.append(record) }

    @discardableResult
    public func checkpoint(minimumInterval: Duration) async throws -> AuditCheckpoint? {
        try await log.checkpoint(minimumInterval: minimumInterval)
    }

    @discardableResult
    public func checkpoint(size: Int64) async throws -> AuditCheckpoint? { try await log.checkpoint(size: size) }

    public var count: Int64 { log.count }
    public var durableCount: Int64 { log.durableCount }
    public var stats: AuditStats { log.stats }
    public func query(_ query: AuditQuery) throws -> [AuditEntry] { try index.query(query) }
    @discardableResult
    public func catchUpIndex() throws -> Int { try index.catchUp() }
    public func newestCheckpoint() throws -> AuditCheckpoint? { try reader.newestCheckpoint() }
    public func entries(after: Int64, limit: Int) throws -> [AuditEntry] { try reader.query(AuditQuery(after: after, limit: limit)) }
    public func checkpoints(after size: Int64) throws -> [AuditCheckpoint] { try reader.checkpoints(after: size) }

    public func inclusionProof(sequence: Int64, treeSize: Int64?) throws -> AuditInclusionProof {
        try reader.inclusionProof(sequence: sequence, treeSize: treeSize)
    }

    public func consistencyProof(from: Int64, to: Int64?) throws -> AuditConsistencyProof { try reader.consistencyProof(from: from, to: to) }
    public func exportJSONLines() throws -> [UInt8] { try reader.exportJSONLines() }

    public func verify(trustedHeads: [String], verifier: NoteVerifier?) throws -> AuditVerification {
        try reader.verify(publicKey: publicKey, logName: logName, trustedHeads: trustedHeads, trustedVerifier: verifier)
    }
}
