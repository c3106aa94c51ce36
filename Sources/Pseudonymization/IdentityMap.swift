import Foundation
import Storage
import Vault

/// The token → original id map, kept only encrypted (with the subject's identity key), for data-subject
/// access and erasure. The gateway lets only `compliance-officer` and `admin` read it, and audits each use.
public struct IdentityMap: Sendable {
    let keys: SubjectKeys
    public init(keys: SubjectKeys) { self.keys = keys }

    /// The name of the data key that seals a token's identity.
    public static func keyOwner(_ token: SubjectToken) -> DataKeyOwner { DataKeyOwner(token: token.rawValue, use: .identity) }

    static func address(_ token: SubjectToken) -> RowAddress { RowAddress(table: .identities, row: token.rawValue, owner: keyOwner(token)) }

    /// Records the original id of `token` (idempotent).
    public func remember(subject: String, token: SubjectToken, in tx: some IdentityRepository & SubjectKeyRepository) throws {
        try remember([(subject, token)], in: tx)
    }

    /// ``remember(subject:token:in:)`` for many people at once (the first subject given for a token is kept), in two
    /// statements on a database server instead of two per person.
    public func remember(_ people: [(subject: String, token: SubjectToken)], in tx: some IdentityRepository & SubjectKeyRepository) throws {
        var first: [(subject: String, token: SubjectToken)] = []
        var tokens = Set<SubjectToken>()
        for person in people where tokens.insert(person.token).inserted { first.append(person) }
        guard !first.isEmpty else { return }
        let known = try tx.identitiesExisting(among: first.map(\.token.rawValue))
        let rows = try first.filter { !known.contains($0.token.rawValue) }.map { person in
            (token: person.token.rawValue, body: try keys.seal(Array(person.subject.utf8), at: Self.address(person.token), in: tx))
        }
        if !rows.isEmpty { try tx.insertIdentities(rows) }
    }

    /// The original id, or nil when unknown or erased.
    public func reveal(_ token: SubjectToken, in tx: some IdentityRepository & SubjectKeyRepository) throws -> String? {
        guard let body = try tx.identity(token: token.rawValue) else { return nil }
        do {
            return String(
                decoding: try keys.open(body, at: Self.address(token), in: tx), as: UTF8.self)
        } catch let error as StorageError where error.code == .shredded {
            return nil
        }
    }

    /// Erases the identity: the key is shredded and the row deleted.
    public func erase(_ token: SubjectToken, in tx: some IdentityRepository & SubjectKeyRepository) throws {
        try keys.shred(Self.keyOwner(token), in: tx)
        try deleteRow(token, in: tx)
    }

    /// Deletes the sealed identity row (after its key was shredded).
    public func deleteRow(_ token: SubjectToken, in tx: some IdentityRepository) throws {
        try tx.deleteIdentity(token: token.rawValue)
    }
}

/// What the identity map stores, as seen from one transaction of a storage backend: one sealed original id per token.
public protocol IdentityRepository {
    func identityExists(token: String) throws -> Bool
    /// The sealed original id of `token`.
    func identity(token: String) throws -> [UInt8]?
    func insertIdentity(token: String, body: [UInt8]) throws
    func deleteIdentity(token: String) throws
    /// Which of `tokens` have an identity row (one statement on a database server; by default one read each).
    func identitiesExisting(among tokens: [String]) throws -> Set<String>
    /// Inserts identity rows (one statement on a database server; by default one insert each).
    func insertIdentities(_ rows: [(token: String, body: [UInt8])]) throws
}

extension IdentityRepository {
    public func identitiesExisting(among tokens: [String]) throws -> Set<String> {
        Set(try tokens.filter { try identityExists(token: $0) })
    }

    public func insertIdentities(_ rows: [(token: String, body: [UInt8])]) throws {
        for row in rows { try insertIdentity(token: row.token, body: row.body) }
    }
}
