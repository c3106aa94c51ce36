/// Every action a principal can be allowed. Routes map to exactly one action each.
public enum Action: String, Sendable, CaseIterable, Hashable, Codable {
    case eventsWrite = "events:write"
    case consentWrite = "consent:write"
    case consentRead = "consent:read"
    case catalogWrite = "catalog:write"
    case recommendationsRead = "recommendations:read"
    case auditRead = "audit:read"
    case auditExport = "audit:export"
    /// Signed tree heads and consistency proofs: hashes only, no entry, for witnesses.
    case auditHeads = "audit:heads"
    case subjectsExport = "subjects:export"
    case subjectsErase = "subjects:erase"
    case keysRotate = "keys:rotate"
    case policyReload = "policy:reload"
    case principalsWrite = "principals:write"
}

/// What the audit log records besides the routes' ``Action``s: work done by the command line, background jobs and the
/// console's sign-in, which no API key is authorized for.
public enum SystemAction: String, Sendable, CaseIterable {
    case authRefused = "auth:refused"
    case consoleSignin = "console:signin"
    case consoleSignout = "console:signout"
    case identityLink = "identity:link"
    case identityUnlink = "identity:unlink"
    case importMovieLens = "import:movielens"
    case keysRetire = "keys:retire"
    case keysRewrap = "keys:rewrap"
    case modelPromote = "model:promote"
    case modelRollback = "model:rollback"
    case modelUnlearn = "model:unlearn"
    case principalsAdd = "principals:add"
    case principalsRevoke = "principals:revoke"
    case retentionRun = "retention:run"
    case segmentsAnalyse = "segments:analyse"
}

/// The purposes Veil's own code acts on, whatever else a policy defines: personalization feeds the feature store and
/// the recommender; marketing allows campaign boosts (and a GPC signal withdraws it).
public enum CorePurpose: String, Sendable, CaseIterable {
    case personalization
    case marketing
}

/// The legal ground a purpose rests on.
public enum LawfulBasis: String, Sendable, CaseIterable, Codable {
    case consent
    case contract
    case legitimateInterest = "legitimate-interest"
}

/// How a field is generalized before storage.
public enum FieldRule: String, Sendable, CaseIterable, Codable {
    case keep
    case drop
    /// Age or birth year → a ten-year band ("25-34").
    case ageBand = "age-band"
    /// Location → country or first-level region ("DE-BY" → "DE-BY", "Berlin, DE" → "DE").
    case region
    /// User-agent-like device strings → mobile | tablet | desktop | other.
    case deviceClass = "device-class"
    /// Referrer URL → search | social | direct | email | other.
    case referrerClass = "referrer-class"
    /// Timestamp → the UTC day.
    case day
}

public struct Purpose: Sendable, Equatable {
    public let name: String
    public let version: Int
    public let description: String
    public let lawfulBasis: LawfulBasis
    public let categories: [String]
    public let retentionDays: Int

    /// Consent-based purposes default to "no consent"; others apply without a consent record.
    public var requiresConsent: Bool { lawfulBasis == .consent }
}

public struct DataCategory: Sendable, Equatable {
    public let name: String
    public let description: String
    /// Field name → rule, for the fields this category keeps in any form.
    public let fields: [String: FieldRule]
}

public struct Role: Sendable, Equatable {
    public let name: String
    public let actions: Set<Action>

    /// The publishable role: its keys are put in web pages (the tracking script), so they are bound to origins, need
    /// a shop's proof for any subject id but the script's random ones, and may only send.
    public static let browser = "browser"
    /// The role the command line acts under in audit records (an operator at the machine).
    public static let admin = "admin"
    /// The role of background jobs (retention, unlearning, canary decisions) in audit records.
    public static let system = "system"
    /// Recorded for requests refused before any principal was known.
    public static let none = "none"
    /// All a browser key may ever be allowed.
    public static let browserActions: Set<Action> = [.eventsWrite, .consentWrite]
}

/// A consent notice text shown to people; consents name it by version and the ledger stores its hash.
public struct Notice: Sendable, Equatable {
    public let version: String
    /// Hex BLAKE2b-256 of the notice file's bytes.
    public let hash: String
    /// Set in the notice's front matter (`requires_reconsent: true`): consent given under any earlier notice no
    /// longer allows a purpose; the person must be asked again.
    public let requiresReconsent: Bool

    public init(version: String, hash: String, requiresReconsent: Bool = false) {
        self.version = version
        self.hash = hash
        self.requiresReconsent = requiresReconsent
    }
}

/// The validated content of a policy directory.
public struct PolicySet: Sendable {
    public let purposes: [String: Purpose]
    public let categories: [String: DataCategory]
    public let neverStored: Set<String>
    public let roles: [String: Role]
    public let notices: [String: Notice]
    /// Namespace → the group of namespaces it shares identities with (`identities.yaml`). Identity links join
    /// tokens of one namespace only, unless an administrator lists several namespaces in one group there.
    public let identityGroups: [String: String]
    /// Hex hash of the canonical content: changes whenever any rule changes, not when comments or order do.
    public let version: String

    /// The newest notice version (versions sort as text, `YYYY-MM`): what consents recorded by Veil itself cite.
    public var currentNotice: String { notices.keys.max()! }

    /// Consent given under a notice older than this no longer allows any purpose: the newest notice whose front
    /// matter says `requires_reconsent: true`.
    public var reconsentSince: String? { notices.values.filter(\.requiresReconsent).map(\.version).max() }

    /// The scope within which identity links may join subjects of `namespace`: its group, or itself alone.
    public func identityScope(of namespace: String) -> String {
        identityGroups[namespace].map { "group:\($0)" } ?? "namespace:\(namespace)"
    }

    /// Whether `role` may perform `action`. Unknown roles may do nothing.
    public func allows(role: String, _ action: Action) -> Bool {
        roles[role]?.actions.contains(action) ?? false
    }

    /// The rule for `field` of `category`, with `never_stored` taking precedence.
    public func rule(category: String, field: String) -> FieldRule {
        if neverStored.contains(field) { return .drop }
        return categories[category]?.fields[field] ?? .drop
    }

    /// The purposes that may use `category`.
    public func purposes(using category: String) -> [Purpose] {
        purposes.values.filter { $0.categories.contains(category) }.sorted { $0.name < $1.name }
    }
}
