/// Proofs that a shop's own server vouches for the subject id a web page sends with a browser key.
///
/// A browser key is public (it sits in the page), so by itself it could speak for any subject id: grant, withdraw
/// (which shreds) or fill another person's profile. Each browser key therefore has an identity secret, shown once
/// when the key is made and derived here from the key's fingerprint, never stored. The shop's server computes
/// `HMAC-SHA256(secret, subject id)` for the signed-in person and puts it in the page; the gateway accepts that id
/// from the page only with that proof. The random ids the script makes for people who are not signed in need none.
public struct SubjectProofs: Sendable {
    private let fingerprinter: Fingerprinter

    init(fingerprinter: Fingerprinter) { self.fingerprinter = fingerprinter }

    /// The identity secret of the browser key whose fingerprint is `keyFingerprint` (`vs_` + 64 hex digits).
    public func secret(forKey keyFingerprint: [UInt8]) -> String {
        "vs_" + fingerprinter.digest(keyFingerprint).hexString
    }

    /// Whether `proof` (hex) is `subject`'s proof under the secret of the key whose fingerprint is `keyFingerprint`;
    /// compared in constant time.
    public func isValid(proof: String, subject: String, keyFingerprint: [UInt8]) -> Bool {
        guard let given = [UInt8](hexString: proof) else { return false }
        let expected = Hash.hmacSHA256(Array(subject.utf8), key: Array(secret(forKey: keyFingerprint).utf8))
        return SecureRandom.constantTimeEqual(given, expected)
    }

    /// The proof a shop's server computes: HMAC-SHA256 keyed with the secret's text, over the subject id, in hex.
    public static func proof(subject: String, secret: String) -> String {
        Hash.hmacSHA256(Array(subject.utf8), key: Array(secret.utf8)).hexString
    }
}

extension KeyRing {
    /// The tool that makes and checks browser keys' identity secrets.
    public var subjectProofs: SubjectProofs { SubjectProofs(fingerprinter: fingerprinter(for: .browserIdentity)) }
}
