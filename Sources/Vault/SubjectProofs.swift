/// Proofs that a shop's own server vouches for the subject id a web page sends with a browser key.
///
/// A browser key is public (it sits in the page), so by itself it could speak for any subject id: grant, withdraw
/// (which shreds) or fill another person's profile. Each browser key therefore has an identity secret, shown once
/// when the key is made and derived here from the key's fingerprint, never stored. The shop's server puts a proof in
/// the signed-in person's page: `EXPIRES.HMAC-SHA256(secret, "EXPIRES|subject id")` in hex, EXPIRES in Unix seconds,
/// so that a proof leaked from a log or a cache stops working. The random ids the script makes for people who are not
/// signed in need none.
public struct SubjectProofs: Sendable {
    private let fingerprinter: Fingerprinter
    /// The longest a proof may be valid for, in seconds (31 days): a proof for ever would be a password for ever.
    public static let maxLifetime: Int64 = 31 * 86_400

    init(fingerprinter: Fingerprinter) { self.fingerprinter = fingerprinter }

    /// The identity secret of the browser key whose fingerprint is `keyFingerprint` (`vs_` + 64 hex digits).
    public func secret(forKey keyFingerprint: [UInt8]) -> String {
        "vs_" + fingerprinter.digest(keyFingerprint).hexString
    }

    /// Whether `proof` is `subject`'s proof under the secret of the key whose fingerprint is `keyFingerprint`, not
    /// expired at `now` (Unix seconds) and not valid for longer than ``maxLifetime``; compared in constant time.
    public func isValid(proof: String, subject: String, keyFingerprint: [UInt8], now: Int64) -> Bool {
        let parts = proof.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, parts[0].utf8.count <= 12, let expires = Int64(parts[0]), expires > now, expires <= now + Self.maxLifetime,
            let given = [UInt8](hexString: String(parts[1]))
        else { return false }
        let expected = Hash.hmacSHA256(Array("\(expires)|\(subject)".utf8), key: Array(secret(forKey: keyFingerprint).utf8))
        return SecureRandom.constantTimeEqual(given, expected)
    }

    /// The proof a shop's server computes, valid until `expires` (Unix seconds).
    public static func proof(subject: String, secret: String, expires: Int64) -> String {
        "\(expires)." + Hash.hmacSHA256(Array("\(expires)|\(subject)".utf8), key: Array(secret.utf8)).hexString
    }
}

extension KeyRing {
    /// The tool that makes and checks browser keys' identity secrets.
    public var subjectProofs: SubjectProofs { SubjectProofs(fingerprinter: fingerprinter(for: .browserIdentity)) }
}
