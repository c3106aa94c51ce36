import Audit
import Foundation
import Persistence
import Storage
import Synchronization
import Vault

/// Request ids: 16 hex digits from the operating system's CSPRNG, unpredictable so that an id says nothing about
/// traffic volume. Drawn 4 KiB at a time: a random-bytes system call per request showed in a cached
/// recommendation request's profile.
public enum RequestID {
    private static let pool = Mutex<(bytes: [UInt8], used: Int)>(([], 0))

    public static func next() -> String {
        let raw: [UInt8] = pool.withLock { pool in
            if pool.used + 8 > pool.bytes.count {
                pool.bytes = SecureRandom.bytes(4096)
                pool.used = 0
            }
            defer { pool.used += 8 }
            return Array(pool.bytes[pool.used..<pool.used + 8])
        }
        return raw.hexString
    }
}

/// Random tokens for forms and sessions, compared in constant time.
public enum FormToken {
    /// 256 random bits in hex.
    public static func make() -> String { SecureRandom.bytes(32).hexString }

    public static func matches(_ given: String, _ expected: String) -> Bool {
        SecureRandom.constantTimeEqual(Array(given.utf8), Array(expected.utf8))
    }
}

/// Whether `error` says the disk is full, whichever layer threw it.
public func isDiskFull(_ error: any Error) -> Bool {
    switch error {
    case let error as any BackendError: error.isDiskFull
    case let error as AuditError: error.diskFull
    default: false
    }
}

/// Whether `error` says the database did not answer (down, restarting, a statement timed out): worth a retry.
public func isDatabaseUnavailable(_ error: any Error) -> Bool {
    (error as? any BackendError)?.isUnavailable ?? false
}

extension VeilService {
    /// Whether the operational database answers (readiness).
    public func databaseReachable() async -> Bool { await store.isReachable() }

    /// Verifies the whole audit log with the gateway's own key, and against `trustedHeads` a caller kept from before
    /// (signed notes; `verifier` when they were signed by another key than this gateway's).
    ///
    /// On a database several gateways share, every gateway's log as shipped there is verified too (``SharedAudit``),
    /// each against the trusted heads that name it; this gateway's file is checked against the rest.
    public func verifyAuditLog(trustedHeads: [String] = [], verifier: NoteVerifier? = nil) async throws -> AuditVerification {
        let audit = self.audit
        guard let shared = sharedAudit else {
            return try await offThePool { try audit.verify(trustedHeads: trustedHeads, verifier: verifier) }
        }
        // The copies first (after shipping what is pending), then the file.
        return try await SharedAudit.verify(
            file: { heads, verifier in try await offThePool { try audit.verify(trustedHeads: heads, verifier: verifier) } },
            own: shared.log, publicKey: shared.publicKey, trustedHeads: trustedHeads, verifier: verifier,
            copies: try await shared.verifyAll(trustedHeads: trustedHeads, verifier: verifier))
    }

    /// The audit entries matching `query`: this gateway's log's, or on a shared database every gateway's (each named by
    /// its log) with the cursor of the next page.
    public func queryAuditLog(_ query: AuditQuery) async throws -> (entries: [LoggedAuditEntry], next: Int64?) {
        if let shared = sharedAudit {
            let entries = try await shared.query(query)
            return (entries, entries.count == query.limit ? entries.last?.position : nil)
        }
        let audit = self.audit
        let entries = try await offThePool { try audit.query(query) }
        return (
            entries.map { LoggedAuditEntry(log: nil, position: $0.sequence, entry: $0) }, entries.count == query.limit ? entries.last?.sequence : nil
        )
    }

    /// The newest signed head of the audit log.
    public func newestAuditHead() async throws -> AuditCheckpoint? {
        let audit = self.audit
        return try await offThePool { try audit.newestCheckpoint() }
    }

    /// The token under which the audit log records `subject` for this principal's namespace, in hex.
    public func auditToken(for subject: String, principal: Principal) async throws -> String {
        try await subjects.token(for: subject, principal: principal).rawValue
    }

    /// `data` sealed to `recipient` (crypto_box_seal): only the holder of its secret key opens it.
    public func seal(_ data: Data, to recipient: RecipientKey) throws -> Data {
        Data(try SealedBox.seal(Array(data), to: recipient.bytes))
    }
}

/// An X25519 public key that an export is sealed to.
public struct RecipientKey: Sendable {
    let bytes: [UInt8]

    /// Nil unless `hex` is 32 bytes in hex.
    public init?(hex: String) {
        guard let key = [UInt8](hexString: hex), key.count == 32 else { return nil }
        bytes = key
    }
}
