import Audit
import Foundation
import Persistence
import Policy
import Pseudonymization
import Storage

/// Subject ids become tokens here: validated, tokenized in the caller's namespace and followed through identity links
/// to the person's canonical token. Identity linkage (link, unlink, the links of before scoping) is here too.
public final class Subjects: Sendable {
    let tokenizer: Tokenizer
    let linker: IdentityLinker
    let store: any OperationalStore
    let policy: PolicySet
    let principals: PrincipalStore
    let cache: RecommendationCache
    let audit: any AuditTrail
    let now: @Sendable () -> Date

    init(
        tokenizer: Tokenizer, linker: IdentityLinker, store: any OperationalStore, policy: PolicySet, principals: PrincipalStore,
        cache: RecommendationCache, audit: any AuditTrail, now: @escaping @Sendable () -> Date
    ) {
        self.tokenizer = tokenizer
        self.linker = linker
        self.store = store
        self.policy = policy
        self.principals = principals
        self.cache = cache
        self.audit = audit
        self.now = now
    }

    /// Validates an app's subject id, tokenizes it in the principal's namespace and follows an identity link to
    /// the person's canonical token.
    public func token(for subject: String, principal: Principal) async throws -> SubjectToken {
        try await canonical(sourceToken(for: subject, principal: principal))
    }

    /// The person's canonical token of a source token.
    public func canonical(_ source: SubjectToken) async throws -> SubjectToken {
        try await store.read { [linker] in try linker.canonical(source, in: $0) }
    }

    /// A subject's token in `namespace`, identity links followed, as the API finds it: for the command line's search of
    /// the audit log.
    public func token(for subject: String, namespace: String) async throws -> SubjectToken {
        try await token(for: subject, principal: Principal(name: "cli", role: Role.admin, namespace: namespace))
    }

    /// The tokens of one person: the subject's and those identity links join to it (tokens only, never ids).
    public func personTokens(subject: String, principal: Principal, note: AuditNote) async throws -> [SubjectToken] {
        let token = try await token(for: subject, principal: principal)
        note.update { $0.subjectToken = token.rawValue }
        return try await person(of: token)
    }

    /// Every token of the person `token` belongs to.
    func person(of token: SubjectToken) async throws -> [SubjectToken] {
        try await store.read { [linker] in try linker.person(of: token, in: $0) }
    }

    /// The token of the id as this source knows it, before identity links.
    public func sourceToken(for subject: String, principal: Principal) throws -> SubjectToken {
        if let problem = SubjectID.problem(subject) { throw CoreError(.unprocessable, "invalid_subject", "subject \(problem)") }
        if principal.isBrowser, !principals.browserMayName(subject, principal, at: now()) { throw PrincipalStore.subjectProofRequired }
        return tokenizer.token(for: subject, namespace: principal.namespace)
    }

    /// Links the subject to an earlier token of the same person when a rule matches (exact e-mail, or name and
    /// postcode above the similarity threshold). Only keyed hashes of the attributes are stored. Audited.
    public func link(_ subject: String, namespace: String, attributes: LinkAttributes, actor: String) async throws -> IdentityLinker.Link? {
        let principal = Principal(name: actor, role: Role.admin, namespace: namespace)
        let token = try sourceToken(for: subject, principal: principal)
        let link = try await linkInTransaction(token, scope: policy.identityScope(of: namespace), attributes: attributes)
        try await store.syncCommitted()
        if let link {
            cache.drop(token: link.canonical.rawValue)
            cache.forgetLinks()
        }
        try await audit.append(
            AuditRecord(
                actor: actor, role: Role.admin, action: SystemAction.identityLink.rawValue, resource: "namespace \(namespace)",
                subjectToken: token.rawValue, outcome: link == nil ? .noMatch : .linked,
                reason: link.map { "rule \($0.rule), score \(String(format: "%.2f", $0.score)), canonical \($0.canonical.rawValue)" }
                    ?? "no rule matched"))
        return link
    }

    func linkInTransaction(_ token: SubjectToken, scope: String, attributes: LinkAttributes) async throws -> IdentityLinker.Link? {
        let at = now()
        return try await store.write { [linker] db in
            let link = try linker.link(token, scope: scope, attributes: attributes, at: at, in: db)
            if link != nil { try db.announce([.links]) }
            return link
        }
    }

    /// Undoes a link (admin only, through the command line). Audited.
    public func unlink(_ subject: String, namespace: String, actor: String) async throws -> Bool {
        let token = try sourceToken(for: subject, principal: Principal(name: actor, role: Role.admin, namespace: namespace))
        let existed = try await unlinkInTransaction(token)
        try await store.syncCommitted()
        if existed { cache.forgetLinks() }
        try await audit.append(
            AuditRecord(
                actor: actor, role: Role.admin, action: SystemAction.identityUnlink.rawValue, resource: "namespace \(namespace)",
                subjectToken: token.rawValue, outcome: existed ? .unlinked : .noLink))
        return existed
    }

    /// Links made before links were scoped to a tenant may join subjects of two namespaces: counts them, or (with
    /// `undo`) removes them all, audited. Their subjects keep their own tokens from then on.
    public func legacyLinks(undo: Bool, actor: String) async throws -> Int {
        let linker = self.linker
        guard undo else { return try await store.read { try linker.legacyLinkCount(in: $0) } }
        let removed = try await store.write { db in
            let removed = try linker.undoLegacyLinks(in: db)
            try db.announce([.links])
            return removed
        }
        try await store.syncCommitted()
        cache.clear()
        try await audit.append(
            AuditRecord(
                actor: actor, role: Role.admin, action: SystemAction.identityUnlink.rawValue, resource: "links made before links were scoped",
                outcome: .unlinked, reason: "\(removed) legacy links removed"))
        return removed
    }

    func unlinkInTransaction(_ token: SubjectToken) async throws -> Bool {
        try await store.write { [linker] db in
            let existed = try linker.unlink(token, in: db)
            if existed { try db.announce([.links]) }
            return existed
        }
    }
}
