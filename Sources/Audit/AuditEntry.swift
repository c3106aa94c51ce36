import Foundation
import Vault

/// The outcomes Veil records. A closed set, so that a query can refuse a filter no entry could match (a typo
/// would otherwise read as "nothing happened").
public enum AuditOutcome: String, CaseIterable, Sendable {
    /// A request or command that did what it asked.
    case allowed
    /// Refused by authentication or authorization (401, 403).
    case denied
    /// Refused for its input (another 4xx).
    case rejected
    /// Failed on the server's side (5xx).
    case error
    /// Identity linkage: linked, no rule matched, unlinked, nothing to unlink.
    case linked, noMatch = "no-match", unlinked, noLink = "no-link"
    /// A canary model's end.
    case promoted, rolledBack = "rolled-back"
}

/// What happened, as submitted by the gateway or the command line. Holds tokens, never raw subject ids.
public struct AuditRecord: Sendable, Equatable, Codable {
    public var actor: String
    public var role: String
    public var action: String
    public var resource: String
    public var subjectToken: String?
    public var purpose: String?
    /// One of ``AuditOutcome``'s raw values (kept as text: a verified log is read as written).
    public var outcome: String
    public var reason: String
    public var requestID: String

    public init(
        actor: String, role: String, action: String, resource: String, subjectToken: String? = nil,
        purpose: String? = nil, outcome: AuditOutcome, reason: String = "", requestID: String = ""
    ) {
        self.init(
            actor: actor, role: role, action: action, resource: resource, subjectToken: subjectToken, purpose: purpose,
            outcomeText: outcome.rawValue, reason: reason, requestID: requestID)
    }

    /// As read back from the log.
    init(
        actor: String, role: String, action: String, resource: String, subjectToken: String?, purpose: String?,
        outcomeText: String, reason: String, requestID: String
    ) {
        self.actor = actor
        self.role = role
        self.action = action
        self.resource = resource
        self.subjectToken = subjectToken
        self.purpose = purpose
        self.outcome = outcomeText
        self.reason = reason
        self.requestID = requestID
    }
}

/// A record in the chain: sequence number, time, previous hash and own hash.
public struct AuditEntry: Sendable, Equatable, Codable {
    public var sequence: Int64
    /// Milliseconds since the epoch, UTC.
    public var at: Int64
    public var record: AuditRecord
    public var previousHash: String
    public var hash: String

    /// The entry's leaf hash in the log's Merkle tree, recomputed from its fields (never from the stored `hash`):
    /// SHA-256(0x00 || BLAKE2b digest). What a client checks an inclusion proof from.
    public var leafHash: [UInt8] {
        Merkle.leafHash([UInt8](hexString: Self.computeHash(sequence: sequence, at: at, record: record, previousHash: previousHash))!)
    }

    /// BLAKE2b-256 over a canonical, length-prefixed encoding of every field and the previous hash.
    static func computeHash(sequence: Int64, at: Int64, record r: AuditRecord, previousHash: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(384)
        out.append(contentsOf: "veil.audit.v1".utf8)
        func put(_ s: String) { out.appendLengthPrefixed(s) }
        put(String(sequence)); put(String(at)); put(r.actor); put(r.role); put(r.action); put(r.resource)
        put(r.subjectToken ?? "-"); put(r.purpose ?? "-"); put(r.outcome); put(r.reason); put(r.requestID); put(previousHash)
        return Hash.blake2b(out).hexString
    }
}

/// A signed tree head: "the log's first `size` entries are the leaves of the Merkle tree whose root is `rootHash`",
/// as a C2SP `tlog-checkpoint` in a C2SP `signed-note` (Ed25519), the format Go's checksum database, Sigstore and
/// the witness network read. Whoever holds one can later prove the log was neither cut nor rewritten below `size`.
public struct AuditCheckpoint: Sendable, Equatable, Codable {
    /// Entries covered: entries 1…size.
    public var size: Int64
    /// Base64 of the 32-byte RFC 6962 root.
    public var rootHash: String
    /// When it was signed (milliseconds since the epoch); local bookkeeping, not part of the signed note.
    public var at: Int64
    /// The signed note: checkpoint text, a blank line, a signature line.
    public var note: String

    public init(size: Int64, rootHash: String, at: Int64, note: String) {
        self.size = size
        self.rootHash = rootHash
        self.at = at
        self.note = note
    }
}

/// The first design's signed statement of the hash chain's head, still verified in logs written before the tree.
struct LegacyCheckpoint: Sendable, Equatable {
    var sequence: Int64
    var headHash: String
    var at: Int64
    /// Hex Ed25519 signature over ``message``.
    var signature: String

    var message: [UInt8] { Array("veil.audit.checkpoint.v1|\(sequence)|\(headHash)|\(at)".utf8) }
}

/// The one error type of the Audit module.
public struct AuditError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// The disk holding the log is full (SQLITE_FULL, or ENOSPC from the WAL's sync): nothing was appended.
    public let diskFull: Bool
    /// The caller's input was refused (a trusted head that does not verify), not the log.
    public let invalidInput: Bool
    public init(_ message: String, diskFull: Bool = false, invalidInput: Bool = false) {
        self.message = message
        self.diskFull = diskFull
        self.invalidInput = invalidInput
    }
    public var description: String { message }
}
