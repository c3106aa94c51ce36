import Storage
import Vault

/// How a consent decision reached Veil.
public enum ConsentMethod: String, Sendable, Codable, CaseIterable {
    case banner, settings, api, gpc, `import`
}

/// One append-only ledger event: who agreed to (or withdrew) what, when, how, under which notice.
public struct ConsentEvent: Sendable, Equatable, Codable {
    public var token: SubjectToken
    public var purpose: String
    public var purposeVersion: Int
    public var lawfulBasis: String
    public var granted: Bool
    /// Milliseconds since the epoch, UTC.
    public var at: Int64
    /// The app (namespace) and principal that sent it.
    public var sourceApp: String
    public var principal: String
    public var method: ConsentMethod
    public var noticeVersion: String
    /// Hash of the notice text shown (from the policy, not from the caller).
    public var noticeHash: String
    public var jurisdiction: String
    public var expiresAt: Int64?
    /// A GPC withdrawal that met a live explicit opt-in: both stay on record.
    public var gpcConflict: Bool

    public init(
        token: SubjectToken, purpose: String, purposeVersion: Int, lawfulBasis: String, granted: Bool, at: Int64,
        sourceApp: String, principal: String, method: ConsentMethod, noticeVersion: String, noticeHash: String,
        jurisdiction: String, expiresAt: Int64? = nil, gpcConflict: Bool = false
    ) {
        self.token = token
        self.purpose = purpose
        self.purposeVersion = purposeVersion
        self.lawfulBasis = lawfulBasis
        self.granted = granted
        self.at = at
        self.sourceApp = sourceApp
        self.principal = principal
        self.method = method
        self.noticeVersion = noticeVersion
        self.noticeHash = noticeHash
        self.jurisdiction = jurisdiction
        self.expiresAt = expiresAt
        self.gpcConflict = gpcConflict
    }

    /// Unambiguous bytes for hashing: every field length-prefixed, in a fixed order.
    func canonicalBytes(sequence: Int64, previousHash: String) -> [UInt8] {
        var out: [UInt8] = Array("veil.consent.v1".utf8)
        func put(_ s: String) { out.appendLengthPrefixed(s) }
        put(String(sequence)); put(previousHash); put(token.rawValue); put(purpose); put(String(purposeVersion))
        put(lawfulBasis); put(granted ? "1" : "0"); put(String(at)); put(sourceApp); put(principal); put(method.rawValue)
        put(noticeVersion); put(noticeHash); put(jurisdiction); put(expiresAt.map(String.init) ?? "-"); put(gpcConflict ? "1" : "0")
        return out
    }
}

/// A stored event with its place in the chain: the receipt handed back to the caller.
public struct ConsentRecord: Sendable, Equatable, Codable {
    public var sequence: Int64
    public var event: ConsentEvent
    public var previousHash: String
    public var hash: String
}

/// The current decision for one subject and purpose.
public struct ConsentDecision: Sendable, Equatable {
    public enum Reason: String, Sendable {
        case granted, withdrawn, expired, noRecord = "no-record", notConsentBased = "not-consent-based", unknownPurpose = "unknown-purpose"
        /// Given under an older version of the purpose, or before a notice that requires re-consent.
        case reconsentRequired = "reconsent-required"
    }
    public var allowed: Bool
    public var reason: Reason
    /// When an allowing consent lapses (ms since the epoch), if it was given with an expiry: whatever is derived
    /// from it (a cached list) must not outlive it.
    public var expiresAt: Int64?

    public init(allowed: Bool, reason: Reason, expiresAt: Int64? = nil) {
        self.allowed = allowed
        self.reason = reason
        self.expiresAt = expiresAt
    }
}

/// The one error type of the Consent module.
public struct ConsentError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable { case unknownPurpose, unknownNotice, invalid }
    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
    public static func == (l: ConsentError, r: ConsentError) -> Bool { l.code == r.code }
}
