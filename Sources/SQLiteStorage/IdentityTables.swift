import Foundation
import GRDB
import Pseudonymization
import Storage

/// The identity map's table: the sealed original id per token.
public struct IdentityTables: MigrationSet {
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

extension Database: IdentityRepository {
    public func identityExists(token: String) throws -> Bool {
        try Bool.fetchOne(cachedStatement(sql: "SELECT 1 FROM identities WHERE token = ?"), arguments: [token]) == true
    }

    public func identity(token: String) throws -> [UInt8]? {
        try Data.fetchOne(cachedStatement(sql: "SELECT body FROM identities WHERE token = ?"), arguments: [token]).map { Array($0) }
    }

    public func insertIdentity(token: String, body: [UInt8]) throws {
        try cachedStatement(sql: "INSERT INTO identities (token, body) VALUES (?, ?)").execute(arguments: [token, Data(body)])
    }

    public func deleteIdentity(token: String) throws {
        try cachedStatement(sql: "DELETE FROM identities WHERE token = ?").execute(arguments: [token])
    }
}

/// Identity linkage's tables: match keys (keyed hashes) and links.
public struct LinkTables: MigrationSet {
    public init() {}
    public func register(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("pseudonymization.v1.links") { db in
            try db.execute(
                sql: """
                    CREATE TABLE match_keys (
                        kind TEXT NOT NULL,
                        key TEXT NOT NULL,
                        token TEXT NOT NULL,
                        name_grams TEXT,
                        PRIMARY KEY (kind, key, token)
                    ) WITHOUT ROWID;
                    CREATE TABLE identity_links (
                        token TEXT PRIMARY KEY NOT NULL,
                        canonical TEXT NOT NULL,
                        rule TEXT NOT NULL,
                        score REAL NOT NULL,
                        created_at INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    """)
        }
        // Match keys became scoped (a namespace, or a group of namespaces that share identities); the unscoped
        // keys of v1 let a link cross tenants, and their inputs are not stored to recompute them.
        migrator.registerMigration("pseudonymization.v2.scoped_match_keys") { db in
            try db.execute(sql: "DELETE FROM match_keys")
        }
        // Links record their scope; NULL marks a link made before links were scoped, which may cross tenants.
        migrator.registerMigration("pseudonymization.v3.link_scope") { db in
            try db.execute(sql: "ALTER TABLE identity_links ADD COLUMN scope TEXT")
        }
    }
}

extension Database: LinkRepository {
    public func link(of token: String) throws -> StoredLink? {
        try Row.fetchOne(
            cachedStatement(sql: "SELECT token, canonical, rule, score, created_at, scope FROM identity_links WHERE token = ?"), arguments: [token]
        ).map {
            StoredLink(
                token: $0["token"], canonical: $0["canonical"], rule: $0["rule"], score: $0["score"], createdAt: $0["created_at"], scope: $0["scope"])
        }
    }

    public func setLink(_ l: StoredLink) throws {
        try cachedStatement(
            sql: "INSERT OR REPLACE INTO identity_links (token, canonical, rule, score, created_at, scope) VALUES (?, ?, ?, ?, ?, ?)"
        ).execute(arguments: [l.token, l.canonical, l.rule, l.score, l.createdAt, l.scope])
    }

    public func deleteLink(token: String) throws -> Bool {
        try cachedStatement(sql: "DELETE FROM identity_links WHERE token = ?").execute(arguments: [token])
        return changesCount > 0
    }

    public func linkedTokens(canonical: String) throws -> [String] {
        try String.fetchAll(cachedStatement(sql: "SELECT token FROM identity_links WHERE canonical = ?"), arguments: [canonical])
    }

    public func unscopedLinkCount() throws -> Int {
        try Int.fetchOne(self, sql: "SELECT count(*) FROM identity_links WHERE scope IS NULL") ?? 0
    }

    public func deleteUnscopedLinks() throws -> Int {
        try execute(sql: "DELETE FROM identity_links WHERE scope IS NULL")
        return changesCount
    }

    public func matchKeyHolders(kind: String, key: String, excluding: String, limit: Int?) throws -> [(token: String, nameGrams: String?)] {
        try Row.fetchAll(
            cachedStatement(sql: "SELECT token, name_grams FROM match_keys WHERE kind = ? AND key = ? AND token <> ? ORDER BY token LIMIT ?"),
            arguments: [kind, key, excluding, limit ?? -1]
        ).map { ($0["token"], $0["name_grams"]) }
    }

    public func addMatchKey(kind: String, key: String, token: String, nameGrams: String?) throws {
        let verb = nameGrams == nil ? "INSERT OR IGNORE" : "INSERT OR REPLACE"
        try cachedStatement(sql: "\(verb) INTO match_keys (kind, key, token, name_grams) VALUES (?, ?, ?, ?)")
            .execute(arguments: [kind, key, token, nameGrams])
    }

    public func forgetMatchKeysAndLinks(token: String) throws {
        try cachedStatement(sql: "DELETE FROM match_keys WHERE token = ?").execute(arguments: [token])
        try cachedStatement(sql: "DELETE FROM identity_links WHERE token = ? OR canonical = ?").execute(arguments: [token, token])
    }
}
