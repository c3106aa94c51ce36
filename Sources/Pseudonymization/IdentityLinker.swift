import Foundation
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
    public func canonical(_ token: SubjectToken, in tx: some LinkRepository) throws -> SubjectToken {
        try canonical(CollectionOfOne(token), in: tx)[token] ?? token
    }

    /// The canonical token of each of `tokens`, following each chain as ``canonical(_:in:)`` does (stopping where it
    /// would come back to a token it passed), reading the links of all of them a hop at a time: a batch of events from
    /// many people costs a few statements, not one per person.
    public func canonical(_ tokens: some Collection<SubjectToken>, in tx: some LinkRepository) throws -> [SubjectToken: SubjectToken] {
        var current: [SubjectToken: SubjectToken] = [:]
        var seen: [SubjectToken: Set<SubjectToken>] = [:]
        for token in tokens { (current[token], seen[token]) = (token, [token]) }
        var following = Array(current.keys)
        while !following.isEmpty {
            let links = try tx.links(of: Array(Set(following.map { current[$0]!.rawValue })))
            following = following.filter { token in
                guard let link = links[current[token]!.rawValue], let next = SubjectToken(rawValue: link.canonical),
                    seen[token]!.insert(next).inserted
                else { return false }
                current[token] = next
                return true
            }
        }
        return current
    }

    /// The canonical token of `token` for a new link in `scope`: the chain is followed only through links made in
    /// that same scope, so a new link never inherits one of another tenant or one made before links were scoped.
    func canonical(_ token: SubjectToken, within scope: String, in tx: some LinkRepository) throws -> SubjectToken {
        var current = token
        var seen: Set<SubjectToken> = [token]
        while let link = try tx.link(of: current.rawValue), link.scope == scope, let next = SubjectToken(rawValue: link.canonical),
            seen.insert(next).inserted
        {
            current = next
        }
        return current
    }

    /// Links made before links were scoped (they may cross tenants): how many remain.
    public func legacyLinkCount(in tx: some LinkRepository) throws -> Int {
        try tx.unscopedLinkCount()
    }

    /// Removes every link made before links were scoped. Returns how many.
    public func undoLegacyLinks(in tx: some LinkRepository) throws -> Int {
        try tx.deleteUnscopedLinks()
    }

    /// Every token of the person `token` belongs to: its canonical token and every token linked to it, directly or
    /// through a chain. Erasure, withdrawal and export reach all of them.
    public func person(of token: SubjectToken, in tx: some LinkRepository) throws -> [SubjectToken] {
        let root = try canonical(token, in: tx)
        var found: [SubjectToken] = [root]
        var seen: Set<SubjectToken> = [root]
        var next = 0
        while next < found.count {
            for member in try members(of: found[next], in: tx) where seen.insert(member).inserted { found.append(member) }
            next += 1
        }
        return found
    }

    /// Records `token`'s matching keys and links it to an earlier token of the same person when a rule matches.
    /// Only tokens recorded under the same `scope` can match: a namespace, or a group of namespaces that the policy
    /// says share identities (`PolicySet.identityScope(of:)`), so a link never crosses tenants by accident.
    /// - Returns: the link made, or nil when no rule matched (the token stays its own canonical token).
    @discardableResult
    public func link(_ token: SubjectToken, scope: String, attributes: LinkAttributes, at: Date, in tx: some LinkRepository) throws -> Link? {
        var found: Link?
        if let email = attributes.email.map(Self.normalizeEmail), !email.isEmpty {
            let k = matchKey("email", scope: scope, email)
            if let other = try tx.matchKeyHolders(kind: "email", key: k, excluding: token.rawValue, limit: 1).first
                .flatMap({ SubjectToken(rawValue: $0.token) })
            {
                found = Link(token: token, canonical: try canonical(other, within: scope, in: tx), rule: "email", score: 1)
            }
            try tx.addMatchKey(kind: "email", key: k, token: token.rawValue, nameGrams: nil)
        }
        if let name = attributes.name.map(Self.normalizeName), let postcode = attributes.postcode.map(Self.normalizePostcode), !name.isEmpty,
            !postcode.isEmpty
        {
            let k = matchKey("postcode", scope: scope, postcode)
            let grams = Set(Self.trigrams(name).map { h("gram|" + $0) })
            if found == nil {
                for holder in try tx.matchKeyHolders(kind: "postcode", key: k, excluding: token.rawValue, limit: nil) {
                    let theirs = Set((holder.nameGrams ?? "").split(separator: ",").map(String.init))
                    let score = Self.similarity(grams, theirs)
                    if score >= threshold, score > (found?.score ?? 0), let other = SubjectToken(rawValue: holder.token) {
                        found = Link(token: token, canonical: try canonical(other, within: scope, in: tx), rule: "name+postcode", score: score)
                    }
                }
            }
            try tx.addMatchKey(kind: "postcode", key: k, token: token.rawValue, nameGrams: grams.sorted().joined(separator: ","))
        }
        guard let link = found, link.canonical != token else { return nil }
        try tx.setLink(
            StoredLink(
                token: token.rawValue, canonical: link.canonical.rawValue, rule: link.rule, score: link.score,
                createdAt: Int64(at.timeIntervalSince1970), scope: scope))
        return link
    }

    /// Undoes the link of `token`. Returns whether a link existed.
    @discardableResult
    public func unlink(_ token: SubjectToken, in tx: some LinkRepository) throws -> Bool {
        try tx.deleteLink(token: token.rawValue)
    }

    /// The tokens linked to `canonical` (not including itself).
    public func members(of canonical: SubjectToken, in tx: some LinkRepository) throws -> [SubjectToken] {
        try tx.linkedTokens(canonical: canonical.rawValue).compactMap(SubjectToken.init(rawValue:))
    }

    /// Forgets every matching key and link of `token` (erasure).
    public func erase(_ token: SubjectToken, in tx: some LinkRepository) throws {
        try tx.forgetMatchKeysAndLinks(token: token.rawValue)
    }
}

/// A link as stored: `token` belongs to the person whose canonical token is `canonical`, found by `rule` in `scope`
/// (nil for a link made before links were scoped).
public struct StoredLink: Sendable, Equatable {
    public var token: String
    public var canonical: String
    public var rule: String
    public var score: Double
    public var createdAt: Int64
    public var scope: String?

    public init(token: String, canonical: String, rule: String, score: Double, createdAt: Int64, scope: String?) {
        self.token = token
        self.canonical = canonical
        self.rule = rule
        self.score = score
        self.createdAt = createdAt
        self.scope = scope
    }
}

/// What identity linkage stores, as seen from one transaction of a storage backend: keyed match keys per token and
/// the links between tokens. No raw attribute is ever passed here.
public protocol LinkRepository {
    /// The link recorded for `token`, if any.
    func link(of token: String) throws -> StoredLink?
    /// The links recorded for `tokens`, by token (one statement on a database server; by default one read each).
    func links(of tokens: [String]) throws -> [String: StoredLink]
    /// Records or replaces the link of `link.token`.
    func setLink(_ link: StoredLink) throws
    /// Removes the link of `token`. Returns whether one existed.
    func deleteLink(token: String) throws -> Bool
    /// The tokens linked directly to `canonical`.
    func linkedTokens(canonical: String) throws -> [String]
    func unscopedLinkCount() throws -> Int
    /// Removes every link with no scope. Returns how many.
    func deleteUnscopedLinks() throws -> Int
    /// Tokens other than `excluding` that hold match key `key` of `kind`, at most `limit` when given.
    func matchKeyHolders(kind: String, key: String, excluding: String, limit: Int?) throws -> [(token: String, nameGrams: String?)]
    /// Records a match key of `token`; an email key is kept as first recorded, a postcode key's name grams are replaced.
    func addMatchKey(kind: String, key: String, token: String, nameGrams: String?) throws
    /// Forgets every match key of `token` and every link from or to it.
    func forgetMatchKeysAndLinks(token: String) throws
}

extension LinkRepository {
    public func links(of tokens: [String]) throws -> [String: StoredLink] {
        var out: [String: StoredLink] = [:]
        for token in tokens { out[token] = try link(of: token) }
        return out
    }
}
