/// What a keyed fingerprint is for. Each purpose has a key of its own, derived inside the Vault from the pseudonym
/// key with a fixed 8-byte context: no caller picks a context or holds the key, and two purposes never share one.
public enum FingerprintPurpose: CaseIterable, Sendable {
    /// API keys, stored only as fingerprints.
    case apiKeys
    /// Match keys of identity linking (normalized e-mail, postcode and name grams).
    case identityLinking
    /// Client addresses in the records of refused requests.
    case clientAddress
    /// The subjects a model was trained on (provenance).
    case modelProvenance
    /// The secrets with which a shop's server vouches for the subject ids its pages send with a browser key.
    case browserIdentity
    /// Subject tokens. Keyed with the pseudonym key itself, as every token ever stored was: fixed for good.
    case subjectTokens
    /// Event deliveries (ids and content), for deduplication.
    case deliveries
    /// Deliveries as recorded before they had a key of their own (the pseudonym key, over "namespace|id"): read
    /// only, to recognize a redelivery of an event first delivered then, until retention has removed those records.
    case legacyDeliveries

    /// The derivation context; nil for the purposes keyed with the pseudonym key itself. Fixed for good: stored
    /// fingerprints (API keys, match keys, tokens) depend on it.
    var context: String? {
        switch self {
        case .subjectTokens, .legacyDeliveries: return nil
        case .deliveries: return "deliver_"
        case .apiKeys: return "apikeys_"
        case .identityLinking: return "linking_"
        case .clientAddress: return "clients_"
        case .modelProvenance: return "provenan"
        case .browserIdentity: return "browser_"
        }
    }
}

/// A keyed hash (BLAKE2b) bound to one purpose: the tool the Vault hands out instead of the key.
public struct Fingerprinter: Sendable {
    public let purpose: FingerprintPurpose
    private let key: SecretKey

    init(purpose: FingerprintPurpose, key: SecretKey) {
        self.purpose = purpose
        self.key = key
    }

    /// The fingerprint of `bytes`, `length` bytes long (16 to 64).
    public func digest(_ bytes: [UInt8], length: Int = 32) -> [UInt8] { Hash.keyed(bytes, key: key, length: length) }

    /// A fingerprinter with a random key of its own, for tests and tools that need one not tied to a key ring.
    public static func ephemeral(_ purpose: FingerprintPurpose) -> Fingerprinter {
        Fingerprinter(purpose: purpose, key: SecretKey(randomCount: 32))
    }
}

extension KeyRing {
    /// The fingerprinter for `purpose`, its key derived from the pseudonym key.
    public func fingerprinter(for purpose: FingerprintPurpose) -> Fingerprinter {
        guard let context = purpose.context else { return Fingerprinter(purpose: purpose, key: pseudonymKey) }
        return Fingerprinter(purpose: purpose, key: KeyDerivation.derive(from: pseudonymKey, context: context, id: 1))
    }
}
