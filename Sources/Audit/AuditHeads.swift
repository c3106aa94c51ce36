import Foundation
import Vault

/// Signs the log's tree heads: a C2SP checkpoint (origin, size, root) in a signed note, under the audit key named
/// after the origin. Hands out signatures and the public verifier key, never the key pair.
public struct HeadSigner: Sendable {
    /// The log's name: first line of every checkpoint and the signing key's name.
    public var origin: String { signer.verifier.name }
    private let signer: NoteSigner

    /// - Throws: ``NoteError/invalidKeyName`` for an origin a signed note cannot carry as a key name.
    public init(origin: String, keys: SigningKeyPair) throws {
        signer = try NoteSigner(name: origin, keyPair: keys)
    }

    /// `veil.audit/` and the first 4 bytes of SHA-256 of the public key in hex: stable for a key, distinct across
    /// deployments, and free of anything personal.
    /// With `logName` (gateways that share a database and a key each keep a log of their own): that name after it, so
    /// that a witness tells their logs apart instead of taking two of them for a fork of one.
    public static func defaultOrigin(for key: SigningPublicKey, logName: String? = nil) -> String {
        "veil.audit/" + Array(Hash.sha256(key.bytes).prefix(4)).hexString + (logName.map { "/" + $0 } ?? "")
    }

    /// The verifier of heads signed with `key` under the default origin (of the log named `logName`).
    public static func verifier(for key: SigningPublicKey, logName: String? = nil) throws -> NoteVerifier {
        try NoteVerifier(name: defaultOrigin(for: key, logName: logName), publicKey: key)
    }

    /// Whether `name` may name a log: 1 to 32 lower-case letters, digits and `-` (it goes into every signed head).
    public static func isValidLogName(_ name: String) -> Bool {
        (1...32).contains(name.utf8.count) && name.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }
    }

    /// What a compliance officer or a witness keeps to check heads (`origin+keyid+base64`, Go's verifier key).
    public var verifier: NoteVerifier { signer.verifier }

    /// The signed note for the head of `size` entries with `root` (32 bytes: a tree root, so always a valid
    /// checkpoint), signed at `at` (milliseconds since the epoch), which the note states in an extension line: a
    /// checkpoint carries no time of its own, and the time stored beside a head must not be open to edits that its
    /// signature does not see. Readers of the format skip extension lines; an Ed25519 cosignature (C2SP
    /// tlog-cosignature) signs them with the rest but states nothing about them, an ML-DSA-44 one leaves them out.
    func sign(size: Int64, root: [UInt8], at: Int64) -> String {
        // Cannot fail: the origin passed the key-name check, the root is a node's 32 bytes, the line is one line.
        try! signer.sign(
            Checkpoint(origin: origin, size: UInt64(size), rootHash: root, extensions: [Self.timeLine + String(at)]).text)
    }

    /// How a head's extension line that states when it was signed begins; the rest is milliseconds since the epoch.
    public static let timeLine = "time-ms "

    /// Whether `head` states it was signed at `at` (milliseconds since the epoch): true for a head signed before
    /// heads stated a time (it says nothing about when).
    public static func states(_ head: Checkpoint, signedAt at: Int64) -> Bool {
        guard let line = head.extensions.first(where: { $0.hasPrefix(timeLine) }) else { return true }
        return line == timeLine + String(at)
    }
}
