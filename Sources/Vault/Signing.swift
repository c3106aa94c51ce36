import CSodium

/// An Ed25519 public key, as published in `Keys/audit.pub`.
public struct SigningPublicKey: Sendable, Equatable {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        guard bytes.count == Int(crypto_sign_publickeybytes()) else {
            throw VaultError(.invalidKeyLength, "an Ed25519 public key is 32 bytes, found \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// True when `signature` is a valid Ed25519 signature of `message` by this key.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        Sodium.ensureReady()
        guard signature.count == Int(crypto_sign_bytes()) else { return false }
        return message.withUnsafeBufferPointer { m in
            crypto_sign_verify_detached(signature, m.baseAddress, UInt64(m.count), bytes) == 0
        }
    }
}

/// An Ed25519 key pair for detached signatures (audit checkpoints).
public struct SigningKeyPair: Sendable {
    public let publicKey: SigningPublicKey
    let secretKey: SecretKey

    /// A fresh random key pair.
    public static func generate() -> SigningKeyPair {
        Sodium.ensureReady()
        var pk = [UInt8](repeating: 0, count: Int(crypto_sign_publickeybytes()))
        let sk = SecretKey.filled(count: Int(crypto_sign_secretkeybytes())) { crypto_sign_keypair(&pk, $0) }!
        return SigningKeyPair(publicKey: try! SigningPublicKey(bytes: pk), secretKey: sk)
    }

    /// The pair an Ed25519 32-byte seed determines (RFC 8032 §5.1.5), as other tools store keys: Go's note signer
    /// keys, for one. The seed is copied into locked memory; the caller should wipe its own copy.
    /// - Throws: ``VaultError/Code/invalidKeyLength`` unless `seed` is 32 bytes.
    init(seed: [UInt8]) throws {
        Sodium.ensureReady()
        guard seed.count == Int(crypto_sign_seedbytes()) else {
            throw VaultError(.invalidKeyLength, "an Ed25519 seed is 32 bytes, found \(seed.count)")
        }
        var pk = [UInt8](repeating: 0, count: Int(crypto_sign_publickeybytes()))
        let sk = SecretKey.filled(count: Int(crypto_sign_secretkeybytes())) { crypto_sign_seed_keypair(&pk, $0, seed) }!
        self.init(publicKey: try SigningPublicKey(bytes: pk), secretKey: sk)
    }

    /// Rebuilds a pair from its 64-byte secret key (which embeds the public key).
    init(secretKey: SecretKey) throws {
        guard secretKey.count == Int(crypto_sign_secretkeybytes()) else {
            throw VaultError(.invalidKeyLength, "an Ed25519 secret key is 64 bytes, found \(secretKey.count)")
        }
        var pk = [UInt8](repeating: 0, count: Int(crypto_sign_publickeybytes()))
        _ = crypto_sign_ed25519_sk_to_pk(&pk, secretKey.typedPointer)
        self.init(publicKey: try SigningPublicKey(bytes: pk), secretKey: secretKey)
    }

    init(publicKey: SigningPublicKey, secretKey: SecretKey) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A detached 64-byte signature of `message`.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: Int(crypto_sign_bytes()))
        message.withUnsafeBufferPointer { m in
            _ = crypto_sign_detached(&signature, nil, m.baseAddress, UInt64(m.count), secretKey.typedPointer)
        }
        return signature
    }
}

/// Anonymous public-key encryption (crypto_box_seal) for exports to a recipient.
public enum SealedBox {
    /// A recipient's X25519 key pair; the public half is what a requester hands over.
    public struct KeyPair: Sendable {
        public let publicKey: [UInt8]
        let secretKey: SecretKey

        public static func generate() -> KeyPair {
            Sodium.ensureReady()
            var pk = [UInt8](repeating: 0, count: Int(crypto_box_publickeybytes()))
            let sk = SecretKey.filled(count: Int(crypto_box_secretkeybytes())) { crypto_box_keypair(&pk, $0) }!
            return KeyPair(publicKey: pk, secretKey: sk)
        }
    }

    /// Encrypts `message` so that only the holder of the secret key for `publicKey` can read it.
    public static func seal(_ message: [UInt8], to publicKey: [UInt8]) throws -> [UInt8] {
        Sodium.ensureReady()
        guard publicKey.count == Int(crypto_box_publickeybytes()) else {
            throw VaultError(.invalidKeyLength, "a sealed-box public key is 32 bytes, found \(publicKey.count)")
        }
        var out = [UInt8](repeating: 0, count: message.count + Int(crypto_box_sealbytes()))
        _ = message.withUnsafeBufferPointer { m in
            crypto_box_seal(&out, m.baseAddress, UInt64(m.count), publicKey)
        }
        return out
    }

    /// Opens a sealed box with the recipient's key pair.
    public static func open(_ box: [UInt8], with pair: KeyPair) throws -> [UInt8] {
        let overhead = Int(crypto_box_sealbytes())
        guard box.count >= overhead else {
            throw VaultError(.malformedEnvelope, "sealed box is shorter than its overhead")
        }
        // One spare byte keeps the output pointer valid for an empty message.
        var out = [UInt8](repeating: 0, count: box.count - overhead + 1)
        let status = out.withUnsafeMutableBufferPointer { o in
            crypto_box_seal_open(o.baseAddress!, box, UInt64(box.count), pair.publicKey, pair.secretKey.typedPointer)
        }
        guard status == 0 else { throw VaultError(.authenticationFailed, "sealed box failed to open") }
        out.removeLast()
        return out
    }
}
