import Foundation
import Vault

/// C2SP signed notes (https://c2sp.org/signed-note) with Ed25519, byte for byte as Go's golang.org/x/mod/sumdb/note
/// writes and reads them: the envelope of the audit log's tree heads, so that witnesses and monitors built for Go's
/// checksum database and other transparency logs can check Veil's.
///
/// A signed note is text ending in a newline, a blank line, then one or more lines
/// `— <key name> <base64(4-byte key ID || signature)>`. The text means nothing until a trusted key's signature over it
/// verifies, so the only way in is `open(_:verifiers:)`, which returns the text only then.
public enum SignedNote: Sendable {
    /// Signature lines read before giving up (Go's limit; the specification asks for at least 16).
    public static let maxSignatures = 100

    /// `text` signed by `keyPair` under `name`: the note to publish (text, blank line, one signature line).
    /// - Throws: ``NoteError/invalidKeyName`` and the text errors of ``NoteSigner/sign(_:)``.
    public static func sign(text: String, name: String, with keyPair: SigningKeyPair) throws(NoteError) -> String {
        try NoteSigner(name: name, keyPair: keyPair).sign(text)
    }

    /// The text of `note`, once a signature by one of `verifiers` checks, with the signatures that did.
    ///
    /// Signatures by keys not in `verifiers` (by name and key ID together) are skipped, as the specification requires,
    /// so a log can rotate keys and witnesses can add cosignatures. Every signature by a known key is checked, and a
    /// bad one refuses the whole note: a signer that produced one is broken or impersonated. (Go checks only the first
    /// signature per key and skips later ones.)
    /// - Throws: a ``NoteError`` naming what is malformed; ``NoteError/invalidSignature(name:keyID:)`` if a known
    ///   key's signature fails; ``NoteError/noVerifiedSignature`` if no known key signed.
    public static func open(
        _ note: String, verifiers: [NoteVerifier]
    ) throws(NoteError) -> (text: String, signatures: [NoteSignature]) {
        try open(Array(note.utf8), verifiers: verifiers)
    }

    /// `open(_:verifiers:)` over the bytes received, which must also be valid UTF-8.
    public static func open(
        _ note: [UInt8], verifiers: [NoteVerifier]
    ) throws(NoteError) -> (text: String, signatures: [NoteSignature]) {
        let (text, lines) = try parse(note)
        var verified = [NoteSignature]()
        for line in lines {
            let matches = verifiers.filter { $0.keyID == line.signature.keyID && $0.name.utf8.elementsEqual(line.signature.name.utf8) }
            guard let verifier = matches.first else { continue }
            guard matches.allSatisfy({ $0.publicKey == verifier.publicKey }) else {
                throw .ambiguousKey(name: line.signature.name, keyID: line.signature.keyID)
            }
            guard verifier.publicKey.isValidSignature(line.signatureBytes, for: text) else {
                throw .invalidSignature(name: line.signature.name, keyID: line.signature.keyID)
            }
            if !verified.contains(where: { $0.keyID == verifier.keyID && $0.name.utf8.elementsEqual(verifier.name.utf8) }) {
                verified.append(line.signature)
            }
        }
        guard !verified.isEmpty else { throw .noVerifiedSignature }
        return (String(decoding: text, as: UTF8.self), verified)
    }

    // MARK: Parsing, unverified

    /// One signature line taken apart.
    struct SignatureLine {
        let signature: NoteSignature
        let signatureBytes: [UInt8]
    }

    /// Splits a note into its text (with the final newline) and its signature lines, checking only their form.
    /// Never hand the text on: nothing vouches for it yet.
    static func parse(_ note: [UInt8]) throws(NoteError) -> (text: [UInt8], lines: [SignatureLine]) {
        try checkCharacters(note)
        // The text ends at the last blank line; it may hold blank lines of its own.
        guard let split = lastBlankLine(in: note) else { throw .noSignatures }
        let text = Array(note[...split])
        let block = note[(split + 2)...]
        guard !block.isEmpty else { throw .noSignatures }
        guard block.last == newline else { throw .missingFinalNewline }
        var lines = [SignatureLine]()
        for (index, line) in block.dropLast().split(separator: newline, omittingEmptySubsequences: false).enumerated() {
            guard let parsed = signatureLine(line) else { throw .malformedSignatureLine(index + 1) }
            guard index < maxSignatures else { throw .tooManySignatures(limit: maxSignatures) }
            // Identical lines from unknown keys are dropped, as Go does; identical lines from known keys verify alike.
            if !lines.contains(where: { $0.signature == parsed.signature }) { lines.append(parsed) }
        }
        return (text, lines)
    }

    /// `— <name> <base64>`, with a valid name and at least a key ID and one signature byte (Go's rule).
    private static func signatureLine(_ line: ArraySlice<UInt8>) -> SignatureLine? {
        guard line.starts(with: signaturePrefix) else { return nil }
        let rest = line.dropFirst(signaturePrefix.count)
        guard let space = rest.firstIndex(of: UInt8(ascii: " ")) else { return nil }
        let name = String(decoding: rest[..<space], as: UTF8.self)
        let base64 = String(decoding: rest[(space + 1)...], as: UTF8.self)
        guard isValidKeyName(name), let raw = decodeBase64(base64), raw.count >= 5 else { return nil }
        let keyID = raw.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return SignatureLine(signature: NoteSignature(name: name, keyID: keyID, base64: base64), signatureBytes: Array(raw.dropFirst(4)))
    }

    private static func lastBlankLine(in note: [UInt8]) -> Int? {
        var i = note.count - 2
        while i >= 0 {
            if note[i] == newline && note[i + 1] == newline { return i }
            i -= 1
        }
        return nil
    }

    // MARK: Rules shared with signers and checkpoints

    static let newline = UInt8(ascii: "\n")
    /// U+2014 EM DASH, then a space.
    static let signaturePrefix: [UInt8] = Array("\u{2014} ".utf8)

    /// Valid UTF-8 with no control character but newline: what the specification allows anywhere in a note.
    static func checkCharacters(_ bytes: [UInt8]) throws(NoteError) {
        // Bytes below 0x20 never occur inside a multi-byte UTF-8 sequence, so a byte scan finds them all.
        if let control = bytes.first(where: { $0 < 0x20 && $0 != newline }) { throw .controlCharacter(control) }
        guard String(validating: bytes, as: UTF8.self) != nil else { throw .invalidUTF8 }
    }

    /// Text a note can carry: allowed characters, ending in a newline.
    static func checkText(_ text: [UInt8]) throws(NoteError) {
        try checkCharacters(text)
        guard text.last == newline else { throw .missingFinalNewline }
    }

    /// Non-empty, no Unicode white space (Go's `unicode.IsSpace` is the White_Space property), no `+`.
    static func isValidKeyName(_ name: String) -> Bool {
        !name.isEmpty && !name.unicodeScalars.contains { $0.properties.isWhitespace || $0 == "+" }
    }

    /// Standard, padded base64 in its one canonical spelling. Foundation alone also takes `QU=J`, `QQ===` and non-zero
    /// trailing bits; re-encoding refuses them all. (Go's StdEncoding does take non-zero trailing bits; no signer
    /// writes them, and refusing them gives every signature and root hash a single spelling.)
    static func decodeBase64(_ string: String) -> [UInt8]? {
        guard let data = Data(base64Encoded: string), data.base64EncodedString() == string else { return nil }
        return [UInt8](data)
    }

    /// SHA-256(name || 0x0A || type byte || public key)[:4], big-endian: the key ID the specification recommends.
    static func keyID(name: String, encodedKey: [UInt8]) -> UInt32 {
        Hash.sha256(Array(name.utf8) + [newline] + encodedKey).prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// `UInt32(_:radix:)` alone would also take a sign.
    static func isHexDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20)
    }

    static func hex8(_ keyID: UInt32) -> String {
        let digits = String(keyID, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}

/// A signature line of a note: who signed (name and key ID) and the base64 as written, to re-emit it unchanged.
public struct NoteSignature: Sendable, Equatable {
    public let name: String
    public let keyID: UInt32
    /// base64(4-byte key ID || signature), as on the line.
    public let base64: String
}

/// An Ed25519 public key trusted to sign notes under a name. Its text form is Go's verifier key
/// `<name>+<8 hex digits of key ID>+<base64(0x01 || public key)>`, which logs publish and witnesses are configured with.
public struct NoteVerifier: Sendable, Equatable {
    /// The signature type byte of Ed25519 in key IDs and verifier keys.
    static let ed25519: UInt8 = 0x01

    public let name: String
    public let keyID: UInt32
    public let publicKey: SigningPublicKey

    /// - Throws: ``NoteError/invalidKeyName`` if `name` is empty or holds white space or `+`.
    public init(name: String, publicKey: SigningPublicKey) throws(NoteError) {
        guard SignedNote.isValidKeyName(name) else { throw .invalidKeyName }
        self.init(name: name, keyID: SignedNote.keyID(name: name, encodedKey: [Self.ed25519] + publicKey.bytes), publicKey: publicKey)
    }

    /// Parses a verifier key string as Go's `note.NewVerifier` does.
    /// - Throws: ``NoteError/malformedVerifierKey``, ``NoteError/invalidKeyName``, ``NoteError/keyIDMismatch`` when the
    ///   key ID is not the one the name and key give, ``NoteError/unsupportedAlgorithm(_:)`` for any type but Ed25519.
    public init(verifierKey: String) throws(NoteError) {
        let parts = verifierKey.utf8.split(separator: UInt8(ascii: "+"), maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[1].count == 8, parts[1].allSatisfy(SignedNote.isHexDigit),
            let keyID = UInt32(String(decoding: parts[1], as: UTF8.self), radix: 16),
            let key = SignedNote.decodeBase64(String(decoding: parts[2], as: UTF8.self)), let algorithm = key.first
        else { throw .malformedVerifierKey }
        let name = String(decoding: parts[0], as: UTF8.self)
        guard SignedNote.isValidKeyName(name) else { throw .invalidKeyName }
        // Go checks the key ID over the whole encoded key before looking at the algorithm.
        guard SignedNote.keyID(name: name, encodedKey: key) == keyID else { throw .keyIDMismatch }
        guard algorithm == Self.ed25519 else { throw .unsupportedAlgorithm(algorithm) }
        guard let publicKey = try? SigningPublicKey(bytes: Array(key.dropFirst())) else { throw .malformedVerifierKey }
        self.init(name: name, keyID: keyID, publicKey: publicKey)
    }

    /// Unchecked: for tests that need a key ID the name and key do not give.
    init(name: String, keyID: UInt32, publicKey: SigningPublicKey) {
        self.name = name
        self.keyID = keyID
        self.publicKey = publicKey
    }

    /// The verifier key string to publish, as Go's `note.NewEd25519VerifierKey` prints it.
    public var verifierKey: String {
        "\(name)+\(SignedNote.hex8(keyID))+\(Data([Self.ed25519] + publicKey.bytes).base64EncodedString())"
    }
}

/// A key pair that signs notes under a name. It never gives out the secret key, and cannot export it: a Veil log
/// signs with the key it holds, and verifiers need only ``verifier``.
public struct NoteSigner: Sendable {
    /// What a verifier of this signer's notes must be given (name, key ID, public key).
    public let verifier: NoteVerifier
    private let keyPair: SigningKeyPair

    /// - Throws: ``NoteError/invalidKeyName`` if `name` is empty or holds white space or `+`.
    public init(name: String, keyPair: SigningKeyPair) throws(NoteError) {
        verifier = try NoteVerifier(name: name, publicKey: keyPair.publicKey)
        self.keyPair = keyPair
    }

    /// The signature line `— <name> <base64(key ID || Ed25519 signature of text)>\n`, to append after the blank line
    /// (also to cosign a note that others signed).
    /// - Throws: ``NoteError/missingFinalNewline``, ``NoteError/controlCharacter(_:)``: a text no reader would open.
    public func signatureLine(for text: String) throws(NoteError) -> String {
        let bytes = Array(text.utf8)
        try SignedNote.checkText(bytes)
        let id = withUnsafeBytes(of: verifier.keyID.bigEndian) { Array($0) }
        return "\u{2014} \(verifier.name) \(Data(id + keyPair.sign(bytes)).base64EncodedString())\n"
    }

    /// `text`, a blank line and this signer's signature line: a note ready to publish.
    public func sign(_ text: String) throws(NoteError) -> String {
        text + "\n" + (try signatureLine(for: text))
    }
}

/// A transparency log's tree head as C2SP tlog-checkpoint note text (https://c2sp.org/tlog-checkpoint): what
/// witnesses and monitors read. `<origin>\n<size>\n<base64 root hash>\n`, then optional extension lines.
///
/// Both initialisers check the specification's rules, so ``text`` is always a checkpoint others can parse.
public struct Checkpoint: Sendable, Equatable {
    /// The log's identity. It should be a schema-less URL and the signing key's name, but readers must not assume so.
    public let origin: String
    /// Leaves in the tree.
    public let size: UInt64
    /// The RFC 6962 root hash of the first `size` leaves (32 bytes).
    public let rootHash: [UInt8]
    /// Opaque lines after the root hash; the specification discourages them, as monitors cannot audit them.
    public let extensions: [String]

    /// - Throws: ``NoteError/emptyOrigin``, ``NoteError/wrongRootHashLength(_:)``, ``NoteError/emptyExtensionLine``,
    ///   ``NoteError/newlineInLine``, ``NoteError/controlCharacter(_:)``.
    public init(origin: String, size: UInt64, rootHash: [UInt8], extensions: [String] = []) throws(NoteError) {
        guard !origin.isEmpty else { throw .emptyOrigin }
        guard rootHash.count == Merkle.hashCount else { throw .wrongRootHashLength(rootHash.count) }
        guard !extensions.contains(where: \.isEmpty) else { throw .emptyExtensionLine }
        for line in [origin] + extensions {
            let bytes = Array(line.utf8)
            guard !bytes.contains(SignedNote.newline) else { throw .newlineInLine }
            try SignedNote.checkCharacters(bytes)
        }
        self.origin = origin
        self.size = size
        self.rootHash = rootHash
        self.extensions = extensions
    }

    /// Parses checkpoint text, such as the text `SignedNote.open(_:verifiers:)` returns.
    /// - Throws: ``NoteError/checkpointTooShort(lines:)``, ``NoteError/emptyOrigin``, ``NoteError/malformedTreeSize``,
    ///   ``NoteError/malformedRootHash``, ``NoteError/wrongRootHashLength(_:)``, ``NoteError/emptyExtensionLine``, and
    ///   the note text rules (final newline, no control characters).
    public init(text: String) throws(NoteError) {
        let bytes = Array(text.utf8)
        try SignedNote.checkText(bytes)
        let lines = bytes.dropLast().split(separator: SignedNote.newline, omittingEmptySubsequences: false)
        guard lines.count >= 3 else { throw .checkpointTooShort(lines: lines.count) }
        guard !lines[0].isEmpty else { throw .emptyOrigin }
        guard let size = Self.treeSize(lines[1]) else { throw .malformedTreeSize }
        guard let root = SignedNote.decodeBase64(String(decoding: lines[2], as: UTF8.self)) else { throw .malformedRootHash }
        guard root.count == Merkle.hashCount else { throw .wrongRootHashLength(root.count) }
        guard !lines[3...].contains(where: \.isEmpty) else { throw .emptyExtensionLine }
        try self.init(
            origin: String(decoding: lines[0], as: UTF8.self), size: size, rootHash: root,
            extensions: lines[3...].map { String(decoding: $0, as: UTF8.self) })
    }

    /// The note text: each line ending in a newline, ready for ``NoteSigner/sign(_:)``.
    public var text: String {
        ([origin, String(size), Data(rootHash).base64EncodedString()] + extensions).map { $0 + "\n" }.joined()
    }

    /// ASCII decimal without leading zeros ("0" alone may start with one). `UInt64(_:)` alone would take "+5" and "007".
    private static func treeSize(_ line: ArraySlice<UInt8>) -> UInt64? {
        guard let first = line.first, line.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            first != UInt8(ascii: "0") || line.count == 1
        else { return nil }
        return UInt64(String(decoding: line, as: UTF8.self))
    }
}

/// The one error type of notes and checkpoints. Messages name keys (public) and rules, never note text.
public enum NoteError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not valid UTF-8.
    case invalidUTF8
    /// A control character other than newline (the byte is given).
    case controlCharacter(UInt8)
    /// The text, the note or its last signature line does not end in a newline.
    case missingFinalNewline
    /// No blank line followed by signature lines.
    case noSignatures
    /// A signature line (1-based among them) that is not `— <key name> <base64>` with a valid name and canonical base64.
    case malformedSignatureLine(Int)
    /// More signature lines than ``SignedNote/maxSignatures``.
    case tooManySignatures(limit: Int)
    /// Well formed, but no signature by any of the keys given.
    case noVerifiedSignature
    /// A known key's signature does not verify: the text or the signature was changed.
    case invalidSignature(name: String, keyID: UInt32)
    /// Two different verifiers share this name and key ID.
    case ambiguousKey(name: String, keyID: UInt32)
    /// A key name that is empty or holds white space or `+`.
    case invalidKeyName
    /// A verifier key string not of the form `<name>+<8 hex digits>+<base64 key>`, or a key of the wrong length.
    case malformedVerifierKey
    /// A verifier key whose key ID is not the one its name and key give.
    case keyIDMismatch
    /// A verifier key of a signature type other than Ed25519 (0x01).
    case unsupportedAlgorithm(UInt8)
    /// A checkpoint with fewer than its three lines (origin, size, root hash).
    case checkpointTooShort(lines: Int)
    /// A checkpoint whose origin line is empty.
    case emptyOrigin
    /// A tree size that is not decimal, has leading zeros or exceeds 2^64 - 1.
    case malformedTreeSize
    /// A root hash that is not canonical, padded standard base64.
    case malformedRootHash
    /// A root hash of the wrong length (the length found).
    case wrongRootHashLength(Int)
    /// An empty extension line.
    case emptyExtensionLine
    /// A newline inside a checkpoint's origin or extension.
    case newlineInLine

    public var description: String {
        switch self {
        case .invalidUTF8: "the note is not valid UTF-8"
        case let .controlCharacter(byte): "the note holds control character 0x\(SignedNote.hex8(UInt32(byte)).suffix(2)); only newline is allowed"
        case .missingFinalNewline: "the text or its last line does not end in a newline"
        case .noSignatures: "the note has no blank line followed by signature lines"
        case let .malformedSignatureLine(n): "signature line \(n) is not \"— <key name> <base64 key ID and signature>\""
        case let .tooManySignatures(limit): "the note has more than \(limit) signature lines"
        case .noVerifiedSignature: "the note has no signature by a known key"
        case let .invalidSignature(name, keyID): "the signature by key \(name)+\(SignedNote.hex8(keyID)) does not verify"
        case let .ambiguousKey(name, keyID): "more than one verifier is key \(name)+\(SignedNote.hex8(keyID))"
        case .invalidKeyName: "a key name must be non-empty, without white space or '+'"
        case .malformedVerifierKey: "a verifier key is <name>+<8 hex digits>+<base64 of 0x01 and a 32-byte key>"
        case .keyIDMismatch: "the verifier key's ID does not match its name and key"
        case let .unsupportedAlgorithm(type): "signature type \(type) is not supported; only Ed25519 (1) is"
        case let .checkpointTooShort(lines): "a checkpoint has origin, size and root hash lines; found \(lines) lines"
        case .emptyOrigin: "the checkpoint's origin line is empty"
        case .malformedTreeSize: "the tree size must be decimal, without leading zeros, below 2^64"
        case .malformedRootHash: "the root hash is not padded standard base64"
        case let .wrongRootHashLength(count): "the root hash is \(count) bytes, not \(Merkle.hashCount)"
        case .emptyExtensionLine: "a checkpoint extension line is empty"
        case .newlineInLine: "a checkpoint's origin and extensions are single lines"
        }
    }
}
