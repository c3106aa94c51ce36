import Foundation
import GRDB
import Storage
import Vault

/// What a source knows about a person, used only to find the same person under another id. Never stored:
/// only keyed hashes of the normalized values are.
public struct LinkAttributes: Sendable {
    public var email: String?
    public var name: String?
    public var postcode: String?

    public init(email: String? = nil, name: String? = nil, postcode: String? = nil) {
        self.email = email
        self.name = name
        self.postcode = postcode
    }
}

/// Links tokens of the same person seen by different sources into one canonical token.
///
/// Rules, evaluated inside the privacy boundary on keyed hashes only:
/// - exact: the trimmed, case-folded e-mail address;
/// - fuzzy: the same postcode and a name similarity (Jaccard over keyed hashes of character trigrams) at or above
///   `threshold`.
/// A link can be undone; every link and undo is returned for the caller to audit.
public struct IdentityLinker: Sendable {
    public struct Migrations: MigrationSet {
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

    /// The outcome of ``link(_:attributes:in:)``.
    public struct Link: Sendable, Equatable {
        public var token: SubjectToken
        public var canonical: SubjectToken
        /// `email` or `name+postcode`.
        public var rule: String
        public var score: Double
    }

    private let fingerprinter: Fingerprinter
    public let threshold: Double

    /// - Parameter key: the matching key (derived from the pseudonymization key; never stored in a database).
    public init(fingerprinter: Fingerprinter, threshold: Double = 0.55) {
        precondition(fingerprinter.purpose == .identityLinking, "identity match keys need the identity-linking fingerprinter")
        self.fingerprinter = fingerprinter
        self.threshold = threshold
    }

    func h(_ s: String) -> String { fingerprinter.digest(Array(s.utf8), length: 16).hexString }

    /// A match key: the rule, the scope and the normalized value, length-prefixed so no two inputs collide.
    func matchKey(_ rule: String, scope: String, _ value: String) -> String {
        var input: [UInt8] = Array("veil.match.v2".utf8)
        for part in [rule, scope, value] { input.append(contentsOf: Array("\(part.utf8.count):".utf8) + Array(part.utf8)) }
        return fingerprinter.digest(input, length: 16).hexString
    }

    static func normalizeEmail(_ e: String) -> String { e.trimmingCharacters(in: .whitespacesAndNewlines).lowercased() }
    static func normalizeName(_ n: String) -> String {
        n.folding(options: [.caseInsensitive, .diacriticInsensitive], locale: nil).lowercased()
            .split(whereSeparator: { !$0.isLetter }).joined(separator: " ")
    }
    static func normalizePostcode(_ p: String) -> String { p.uppercased().filter { $0.isLetter || $0.isNumber } }

    static func trigrams(_ name: String) -> Set<String> {
        let chars = Array("  " + name + " ")
        guard chars.count >= 3 else { return [] }
        return Set((0...(chars.count - 3)).map { String(chars[$0..<($0 + 3)]) })
    }

    /// Jaccard similarity of two sets of hashed trigrams.
    static func similarity(_ a: Set<String>, _ b: Set<String>) -> Double {
        let union = a.union(b).count
        return union == 0 ? 0 : Double(a.intersection(b).count) / Double(union)
    }

    /// The canonical token of `token` (itself when unlinked), following a chain of links (a canonical token that was
    /// itself linked later) to its end.
    public func canonical(_ token: SubjectToken, in db: Database) throws -> SubjectToken {
        var current = token
        var seen: Set<SubjectToken> = [token]
        while let raw = try String.fetchOne(
            db.cachedStatement(sql: "SELECT canonical FROM identity_links WHERE token = ?"), arguments: [current.rawValue]),
            let next = SubjectToken(rawValue: raw), seen.insert(next).inserted
        {
            current = next
        }
        return current
    }

    /// The canonical token of `token` for a new link in `scope`: the chain is followed only through links made in
    /// that same scope, so a new link never inherits one of another tenant or one made before links were scoped.
    func canonical(_ token: SubjectToken, within scope: String, in db: Database) throws -> SubjectToken {
        var current = token
        var seen: Set<SubjectToken> = [token]
        while let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT canonical, scope FROM identity_links WHERE token = ?"), arguments: [current.rawValue]),
            (row["scope"] as String?) == scope, let next = SubjectToken(rawValue: row["canonical"]), seen.insert(next).inserted
        {
            current = next
        }
        return current
    }

    /// Links made before links were scoped (they may cross tenants): how many remain.
    public func legacyLinkCount(in db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT count(*) FROM identity_links WHERE scope IS NULL") ?? 0
    }

    /// Removes every link made before links were scoped. Returns how many.
    public func undoLegacyLinks(in db: Database) throws -> Int {
        try db.execute(sql: "DELETE FROM identity_links WHERE scope IS NULL")
        return db.changesCount
    }

    /// Every token of the person `token` belongs to: its canonical token and every token linked to it, directly or
    /// through a chain. Erasure, withdrawal and export reach all of them.
    public func person(of token: SubjectToken, in db: Database) throws -> [SubjectToken] {
        let root = try canonical(token, in: db)
        var found: [SubjectToken] = [root]
        var seen: Set<SubjectToken> = [root]
        var next = 0
        while next < found.count {
            for member in try members(of: found[next], in: db) where seen.insert(member).inserted { found.append(member) }
            next += 1
        }
        return found
    }

    /// Records `token`'s matching keys and links it to an earlier token of the same person when a rule matches.
    /// Only tokens recorded under the same `scope` can match: a namespace, or a group of namespaces that the policy
    /// says share identities (`PolicySet.identityScope(of:)`), so a link never crosses tenants by accident.
    /// - Returns: the link made, or nil when no rule matched (the token stays its own canonical token).
    @discardableResult
    public func link(_ token: SubjectToken, scope: String, attributes: LinkAttributes, in db: Database) throws -> Link? {
        var found: Link?
        if let email = attributes.email.map(Self.normalizeEmail), !email.isEmpty {
            let k = matchKey("email", scope: scope, email)
            if let other = try String.fetchOne(
                db.cachedStatement(sql: "SELECT token FROM match_keys WHERE kind = 'email' AND key = ? AND token <> ? LIMIT 1"),
                arguments: [k, token.rawValue]
            ).flatMap(SubjectToken.init(rawValue:)) {
                found = Link(token: token, canonical: try canonical(other, within: scope, in: db), rule: "email", score: 1)
            }
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO match_keys (kind, key, token) VALUES ('email', ?, ?)").execute(arguments: [
                k, token.rawValue,
            ])
        }
        if let name = attributes.name.map(Self.normalizeName), let postcode = attributes.postcode.map(Self.normalizePostcode), !name.isEmpty,
            !postcode.isEmpty
        {
            let k = matchKey("postcode", scope: scope, postcode)
            let grams = Set(Self.trigrams(name).map { h("gram|" + $0) })
            if found == nil {
                for row in try Row.fetchAll(
                    db.cachedStatement(sql: "SELECT token, name_grams FROM match_keys WHERE kind = 'postcode' AND key = ? AND token <> ?"),
                    arguments: [k, token.rawValue])
                {
                    let theirs = Set(((row["name_grams"] as String?) ?? "").split(separator: ",").map(String.init))
                    let score = Self.similarity(grams, theirs)
                    if score >= threshold, score > (found?.score ?? 0), let other = SubjectToken(rawValue: row["token"]) {
                        found = Link(token: token, canonical: try canonical(other, within: scope, in: db), rule: "name+postcode", score: score)
                    }
                }
            }
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO match_keys (kind, key, token, name_grams) VALUES ('postcode', ?, ?, ?)")
                .execute(arguments: [k, token.rawValue, grams.sorted().joined(separator: ",")])
        }
        guard let link = found, link.canonical != token else { return nil }
        try db.cachedStatement(
            sql: "INSERT OR REPLACE INTO identity_links (token, canonical, rule, score, created_at, scope) VALUES (?, ?, ?, ?, ?, ?)"
        )
        .execute(arguments: [token.rawValue, link.canonical.rawValue, link.rule, link.score, Int64(Date().timeIntervalSince1970), scope])
        return link
    }

    /// Undoes the link of `token`. Returns whether a link existed.
    @discardableResult
    public func unlink(_ token: SubjectToken, in db: Database) throws -> Bool {
        try db.cachedStatement(sql: "DELETE FROM identity_links WHERE token = ?").execute(arguments: [token.rawValue])
        return db.changesCount > 0
    }

    /// The tokens linked to `canonical` (not including itself).
    public func members(of canonical: SubjectToken, in db: Database) throws -> [SubjectToken] {
        try String.fetchAll(db.cachedStatement(sql: "SELECT token FROM identity_links WHERE canonical = ?"), arguments: [canonical.rawValue])
            .compactMap(SubjectToken.init(rawValue:))
    }

    /// Forgets every matching key and link of `token` (erasure).
    public func erase(_ token: SubjectToken, in db: Database) throws {
        try db.cachedStatement(sql: "DELETE FROM match_keys WHERE token = ?").execute(arguments: [token.rawValue])
        try db.cachedStatement(sql: "DELETE FROM identity_links WHERE token = ? OR canonical = ?").execute(arguments: [
            token.rawValue, token.rawValue,
        ])
    }
}
