import CSodium
import Foundation

/// The keys Veil runs on, as found in the key directory (`Keys/` by default).
///
/// Layout:
/// - `master-v<N>.key`: 32 random bytes, mode 0600; or `master-v<N>.salt` when the master key is
///   derived from a passphrase with Argon2id (crypto_pwhash). The highest N is the current version.
/// - `pseudonym.key`: 32 bytes for keyed-BLAKE2b subject tokens.
/// - `audit.key` (Ed25519 secret, 0600) and `audit.pub` (hex public key, safe to publish).
///
/// Older master versions stay readable until retired with ``retire(directory:below:)``.
public struct KeyRing: Sendable {
    public let directory: String
    /// The version new data is sealed under.
    public let currentVersion: UInt32
    private let masterKeys: [UInt32: SecretKey]
    /// Key for subject tokens, and the root of every fingerprinter's key. Never stored in a database, never handed out:
    /// callers get ``fingerprinter(for:)``.
    let pseudonymKey: SecretKey
    /// Signs audit checkpoints.
    public let auditSigner: SigningKeyPair

    /// All master versions still held, ascending.
    public var versions: [UInt32] { masterKeys.keys.sorted() }

    /// The master key of `version`. Internal: callers seal and open through the ring, never with the key.
    /// - Throws: ``VaultError/Code/unknownKeyVersion`` when that version was never created or was retired.
    func masterKey(version: UInt32) throws -> SecretKey {
        guard let key = masterKeys[version] else {
            throw VaultError(.unknownKeyVersion, "master key version \(version) is not in the key ring (retired or never created)")
        }
        return key
    }

    /// The current master key (internal, as ``masterKey(version:)``).
    var currentMasterKey: SecretKey { masterKeys[currentVersion]! }

    /// Seals `plaintext` under the current master key.
    func seal(_ plaintext: [UInt8], associatedData: [UInt8]) -> [UInt8] {
        AEAD.seal(plaintext, key: currentMasterKey, version: currentVersion, associatedData: associatedData)
    }

    /// Opens an envelope sealed under any master version still in the ring.
    func open(_ envelope: [UInt8], associatedData: [UInt8]) throws -> [UInt8] {
        try AEAD.open(envelope, associatedData: associatedData) { try masterKey(version: $0) }
    }

    init(directory: String, masterKeys: [UInt32: SecretKey], pseudonymKey: SecretKey, auditSigner: SigningKeyPair) {
        self.directory = directory
        self.masterKeys = masterKeys
        self.currentVersion = masterKeys.keys.max()!
        self.pseudonymKey = pseudonymKey
        self.auditSigner = auditSigner
    }
}

extension KeyRing {
    static let masterLength = 32
    static let saltLength = Int(crypto_pwhash_saltbytes())

    static func path(_ directory: String, _ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    /// Creates a new key ring in `directory`. Refuses to overwrite an existing one.
    /// - Parameter passphrase: when given, the master key is derived from it and only a salt is stored.
    @discardableResult
    public static func initialize(directory: String, passphrase: String? = nil) throws -> KeyRing {
        try KeyFiles.ensureDirectory(directory)
        if !existingVersions(directory).isEmpty || KeyFiles.exists(path(directory, "pseudonym.key")) {
            throw VaultError(.keyFileIO, "a key ring already exists in \(directory); use `veil keys rotate` to add a master key version")
        }
        try writeMaster(directory: directory, version: 1, passphrase: passphrase)
        var pseudonym = Sodium.randomBytes(32)
        defer { pseudonym.wipe() }
        try KeyFiles.writeSecret(path(directory, "pseudonym.key"), bytes: pseudonym)
        let signer = SigningKeyPair.generate()
        var secret = signer.secretKey.exportBytes()
        defer { secret.wipe() }
        try KeyFiles.writeSecret(path(directory, "audit.key"), bytes: secret)
        try KeyFiles.writePublic(path(directory, "audit.pub"), bytes: Array((signer.publicKey.bytes.hexString + "\n").utf8))
        return try load(directory: directory, passphrase: passphrase)
    }

    /// Loads the key ring, checking every file's permissions and length.
    public static func load(directory: String, passphrase: String? = nil) throws -> KeyRing {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw VaultError(.missingKeyFile, "key directory \(directory) does not exist; create it with `veil keys init --keys \(directory)`")
        }
        let versions = existingVersions(directory)
        guard !versions.isEmpty else {
            throw VaultError(.missingKeyFile, "no master key in \(directory); create one with `veil keys init --keys \(directory)`")
        }
        var masters: [UInt32: SecretKey] = [:]
        for version in versions {
            masters[version] = try readMaster(directory: directory, version: version, passphrase: passphrase)
        }
        let pseudonym = try KeyFiles.readSecret(path(directory, "pseudonym.key"), expectedCount: 32)
        let auditSecret = try KeyFiles.readSecret(path(directory, "audit.key"), expectedCount: Int(crypto_sign_secretkeybytes()))
        return KeyRing(directory: directory, masterKeys: masters, pseudonymKey: pseudonym, auditSigner: try SigningKeyPair(secretKey: auditSecret))
    }

    /// Adds master key version current+1 (in the same mode, raw or passphrase, as the current one).
    /// - Returns: the new version.
    @discardableResult
    public static func rotate(directory: String, passphrase: String? = nil) throws -> UInt32 {
        let ring = try load(directory: directory, passphrase: passphrase)
        let next = ring.currentVersion + 1
        let derived = KeyFiles.exists(path(directory, "master-v\(ring.currentVersion).salt"))
        try writeMaster(directory: directory, version: next, passphrase: derived ? passphrase : nil)
        return next
    }

    /// Deletes master key versions below `minimum`. Data still sealed under them can no longer be opened:
    /// run the rewrap first. Refuses to retire the current version.
    public static func retire(directory: String, below minimum: UInt32) throws -> [UInt32] {
        let versions = existingVersions(directory)
        guard let current = versions.max(), minimum <= current else {
            throw VaultError(.unknownKeyVersion, "cannot retire the current master key version")
        }
        var retired: [UInt32] = []
        for version in versions where version < minimum {
            for suffix in ["key", "salt"] {
                let file = path(directory, "master-v\(version).\(suffix)")
                if KeyFiles.exists(file) {
                    if suffix == "key", let handle = FileHandle(forWritingAtPath: file) {
                        // Overwrite before unlinking so the bytes do not linger on simple file systems.
                        handle.write(Data(repeating: 0, count: masterLength))
                        try? handle.synchronize()
                        try? handle.close()
                    }
                    try FileManager.default.removeItem(atPath: file)
                }
            }
            retired.append(version)
        }
        return retired
    }

    static func existingVersions(_ directory: String) -> [UInt32] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var versions = Set<UInt32>()
        for name in names where name.hasPrefix("master-v") {
            let rest = name.dropFirst("master-v".count)
            guard let dot = rest.firstIndex(of: "."), let version = UInt32(rest[..<dot]) else { continue }
            let suffix = rest[rest.index(after: dot)...]
            if suffix == "key" || suffix == "salt" { versions.insert(version) }
        }
        return versions.sorted()
    }

    private static func writeMaster(directory: String, version: UInt32, passphrase: String?) throws {
        if let passphrase {
            try KeyFiles.writePublic(path(directory, "master-v\(version).salt"), bytes: Sodium.randomBytes(saltLength))
            _ = try derive(passphrase: passphrase, salt: Array(FileManager.default.contents(atPath: path(directory, "master-v\(version).salt"))!))
        } else {
            var bytes = Sodium.randomBytes(masterLength)
            defer { bytes.wipe() }
            try KeyFiles.writeSecret(path(directory, "master-v\(version).key"), bytes: bytes)
        }
    }

    private static func readMaster(directory: String, version: UInt32, passphrase: String?) throws -> SecretKey {
        let saltPath = path(directory, "master-v\(version).salt")
        if KeyFiles.exists(saltPath) {
            guard let passphrase, !passphrase.isEmpty else {
                throw VaultError(.missingKeyFile, "master key v\(version) is derived from a passphrase; set VEIL_PASSPHRASE")
            }
            guard let salt = FileManager.default.contents(atPath: saltPath).map(Array.init), salt.count == saltLength else {
                throw VaultError(.invalidKeyLength, "salt file \(saltPath) must hold \(saltLength) bytes")
            }
            return try derive(passphrase: passphrase, salt: salt)
        }
        return try KeyFiles.readSecret(path(directory, "master-v\(version).key"), expectedCount: masterLength)
    }

    static func derive(passphrase: String, salt: [UInt8]) throws -> SecretKey {
        Sodium.ensureReady()
        let password = Array(passphrase.utf8).map { CChar(bitPattern: $0) }
        let key = SecretKey.filled(count: masterLength) { out in
            crypto_pwhash(
                out, UInt64(masterLength), password, UInt64(password.count), salt,
                UInt64(crypto_pwhash_opslimit_interactive()), crypto_pwhash_memlimit_interactive(),
                crypto_pwhash_alg_argon2id13())
        }
        guard let key else {
            throw VaultError(.passphraseDerivationFailed, "deriving the master key from VEIL_PASSPHRASE failed (not enough memory?)")
        }
        return key
    }
}
