import CSodium

/// XChaCha20-Poly1305-IETF in a versioned envelope.
///
/// Envelope layout: `format (1) ‖ key version (4, big endian) ‖ nonce (24) ‖ ciphertext ‖ tag (16)`.
/// The header is authenticated together with the caller's associated data, so changing the key
/// version, the format, the associated data or any byte makes ``open(_:associatedData:key:)`` fail.
enum AEAD {
    /// The only envelope format this build writes.
    static let format: UInt8 = 1
    static let keyLength = 32
    static let nonceLength = 24
    static let tagLength = 16
    static let headerLength = 1 + 4
    /// Bytes an envelope adds to its plaintext.
    static let overhead = headerLength + nonceLength + tagLength

    /// Seals `plaintext` under `key`, recording `version` in the envelope.
    static func seal(
        _ plaintext: [UInt8], key: SecretKey, version: UInt32, associatedData: [UInt8]
    ) -> [UInt8] {
        precondition(key.count == keyLength, "AEAD keys are 32 bytes")
        Sodium.ensureReady()
        var out = [UInt8](repeating: 0, count: overhead + plaintext.count)
        out[0] = format
        out[1] = UInt8(truncatingIfNeeded: version >> 24)
        out[2] = UInt8(truncatingIfNeeded: version >> 16)
        out[3] = UInt8(truncatingIfNeeded: version >> 8)
        out[4] = UInt8(truncatingIfNeeded: version)
        let ad = Array(out[0..<headerLength]) + associatedData
        out.withUnsafeMutableBytes { buffer in
            let base = buffer.baseAddress!
            NonceSource.shared.fill(base + headerLength, count: nonceLength)
            let nonce = UnsafePointer((base + headerLength).assumingMemoryBound(to: UInt8.self))
            let cipher = (base + headerLength + nonceLength).assumingMemoryBound(to: UInt8.self)
            var written: UInt64 = 0
            let status = plaintext.withUnsafeBufferPointer { message in
                ad.withUnsafeBufferPointer { adBuffer in
                    crypto_aead_xchacha20poly1305_ietf_encrypt(
                        cipher, &written, message.baseAddress, UInt64(message.count),
                        adBuffer.baseAddress, UInt64(adBuffer.count), nil, nonce, key.typedPointer)
                }
            }
            precondition(status == 0, "XChaCha20-Poly1305 encryption cannot fail for valid lengths")
        }
        return out
    }

    /// The key version recorded in an envelope, read without decrypting it.
    static func keyVersion(of envelope: [UInt8]) throws -> UInt32 {
        guard envelope.count >= overhead else {
            throw VaultError(.malformedEnvelope, "ciphertext is shorter than an envelope (\(envelope.count) bytes)")
        }
        guard envelope[0] == format else {
            throw VaultError(.malformedEnvelope, "unknown envelope format \(envelope[0])")
        }
        return UInt32(envelope[1]) << 24 | UInt32(envelope[2]) << 16 | UInt32(envelope[3]) << 8 | UInt32(envelope[4])
    }

    /// Opens an envelope, asking `key` for the key of the version it names.
    /// - Throws: ``VaultError`` `.malformedEnvelope`, `.unknownKeyVersion` (from `key`) or `.authenticationFailed`.
    static func open(
        _ envelope: [UInt8], associatedData: [UInt8], key: (UInt32) throws -> SecretKey
    ) throws -> [UInt8] {
        let version = try keyVersion(of: envelope)
        let secret = try key(version)
        guard secret.count == keyLength else {
            throw VaultError(.invalidKeyLength, "AEAD keys are 32 bytes")
        }
        let ad = Array(envelope[0..<headerLength]) + associatedData
        let messageLength = envelope.count - overhead
        // One spare byte keeps the output pointer valid for an empty message.
        var out = [UInt8](repeating: 0, count: messageLength + 1)
        let status = envelope.withUnsafeBufferPointer { env in
            ad.withUnsafeBufferPointer { adBuffer in
                out.withUnsafeMutableBufferPointer { message in
                    var written: UInt64 = 0
                    return crypto_aead_xchacha20poly1305_ietf_decrypt(
                        message.baseAddress!, &written, nil,
                        env.baseAddress! + headerLength + nonceLength,
                        UInt64(env.count - headerLength - nonceLength),
                        adBuffer.baseAddress, UInt64(adBuffer.count),
                        env.baseAddress! + headerLength, secret.typedPointer)
                }
            }
        }
        guard status == 0 else {
            throw VaultError(.authenticationFailed, "ciphertext failed authentication (wrong key, wrong context or altered bytes)")
        }
        out.removeLast()
        return out
    }

    /// Opens an envelope with one known key.
    static func open(_ envelope: [UInt8], key: SecretKey, associatedData: [UInt8]) throws -> [UInt8] {
        try open(envelope, associatedData: associatedData) { _ in key }
    }
}
