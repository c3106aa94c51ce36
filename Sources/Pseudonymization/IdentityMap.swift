import Foundation
import GRDB
import Storage

/// The token → original id map, kept only encrypted (with the subject's identity key), for data-subject
/// access and erasure. The gateway lets only `compliance-officer` and `admin` read it, and audits each use.
public struct IdentityMap: Sendable {
    public struct Migrations: MigrationSet {
        public init() {}
        public func register(in migrator: inout DatabaseMigrator) {
            migrator.registerMigration("pseudonymization.v1.identities") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE identities (
                            token TEXT PRIMARY KEY NOT NULL,
                            body BLOB NOT NULL
                        ) WITHOUT ROWID
                        """)
            }
        }
    }

    let keys: SubjectKeys
    public init(keys: SubjectKeys) { self.keys = keys }

    /// The name of the data key that seals a token's identity.
    public static func keyOwner(_ token: SubjectToken) -> String { "\(token.rawValue)#identity" }

    /// Records the original id of `token` (idempotent).
    public func remember(subject: String, token: SubjectToken, in db: Database) throws {
        if try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM identities WHERE token = ?"), arguments: [token.rawValue]) == true { return }
        let sealed = try keys.seal(Array(subject.utf8), token: Self.keyOwner(token), table: "identities", rowID: token.rawValue, in: db)
        try db.cachedStatement(sql: "INSERT INTO identities (token, body) VALUES (?, ?)").execute(arguments: [token.rawValue, sealed])
    }

    /// The original id, or nil when unknown or erased.
    public func reveal(_ token: SubjectToken, in db: Database) throws -> String? {
        guard let body = try Data.fetchOne(db.cachedStatement(sql: "SELECT body FROM identities WHERE token = ?"), arguments: [token.rawValue]) else {
            return nil
        }
        do {
            return String(
                decoding: try keys.open(body, token: Self.keyOwner(token), table: "identities", rowID: token.rawValue, in: db), as: UTF8.self)
        } catch let error as StorageError where error.code == .shredded {
            return nil
        }
    }

    /// Erases the identity: the key is shredded and the row deleted.
    public func erase(_ token: SubjectToken, in db: Database) throws {
        try keys.shred(token: Self.keyOwner(token), in: db)
        try deleteRow(token, in: db)
    }

    /// Deletes the sealed identity row (after its key was shredded).
    public func deleteRow(_ token: SubjectToken, in db: Database) throws {
        try db.cachedStatement(sql: "DELETE FROM identities WHERE token = ?").execute(arguments: [token.rawValue])
    }
}
