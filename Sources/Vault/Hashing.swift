import CCrypto
import CSodium

/// BLAKE2b (crypto_generichash), keyed and unkeyed.
public enum Hash {
    /// Unkeyed BLAKE2b of `message`, `length` bytes (16...64).
    public static func blake2b(_ message: [UInt8], length: Int = 32) -> [UInt8] {
        compute(message, length: length, key: nil)
    }

    /// Keyed BLAKE2b: a PRF/MAC of `message` under `key` (16...64 bytes).
    static func keyed(_ message: [UInt8], key: SecretKey, length: Int = 32) -> [UInt8] {
        compute(message, length: length, key: key)
    }

    /// Unkeyed BLAKE2b-256 of `input` into the first 32 bytes of `output`, without allocating: for loops over
    /// millions of records (verifying the audit log).
    public static func blake2b256(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        precondition(output.count >= 32, "a BLAKE2b-256 digest needs 32 bytes")
        Sodium.ensureReady()
        let status = crypto_generichash(
            output.baseAddress!.assumingMemoryBound(to: UInt8.self), 32,
            input.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(input.count), nil, 0)
        precondition(status == 0, "BLAKE2b cannot fail for valid lengths")
    }

    private static func compute(_ message: [UInt8], length: Int, key: SecretKey?) -> [UInt8] {
        precondition((16...64).contains(length), "BLAKE2b output is 16 to 64 bytes")
        Sodium.ensureReady()
        var out = [UInt8](repeating: 0, count: length)
        let status = message.withUnsafeBufferPointer { m in
            out.withUnsafeMutableBufferPointer { o in
                if let key {
                    return crypto_generichash(o.baseAddress!, length, m.baseAddress, UInt64(m.count), key.typedPointer, key.count)
                }
                return crypto_generichash(o.baseAddress!, length, m.baseAddress, UInt64(m.count), nil, 0)
            }
        }
        precondition(status == 0, "BLAKE2b cannot fail for valid lengths")
        return out
    }
}

extension Hash {
    /// Bytes in a SHA-256 digest.
    public static let sha256Count = 32

    /// SHA-256 of `bytes` (OpenSSL's, which uses the CPU's SHA extensions): for formats that prescribe it, such as
    /// RFC 6962 Merkle trees and signed-note key IDs. Veil's own hashes are BLAKE2b.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: sha256Count) { out, initialized in
            bytes.withUnsafeBytes { sha256(UnsafeRawBufferPointer($0), into: UnsafeMutableRawBufferPointer(out)) }
            initialized = sha256Count
        }
    }

    /// SHA-256 of `input` written to the first 32 bytes of `output`, without allocating: for hot loops that hash
    /// millions of small inputs.
    public static func sha256(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        precondition(output.count >= sha256Count, "a SHA-256 digest needs 32 bytes")
        var context = SHA256_CTX()
        let ok =
            SHA256_Init(&context) == 1
            && SHA256_Update(&context, input.baseAddress, input.count) == 1
            && SHA256_Final(output.baseAddress!.assumingMemoryBound(to: UInt8.self), &context) == 1
        precondition(ok, "SHA-256 cannot fail")
    }

    /// SHA-384 of `bytes`: the digest browsers check a script against (Subresource Integrity).
    public static func sha384(_ bytes: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 48) { out, initialized in
            _ = SHA384(bytes, bytes.count, out.baseAddress)
            initialized = 48
        }
    }

    /// HMAC-SHA-256 (RFC 2104) of `message` under `key` of any length: for proofs computed outside Veil, by code that
    /// has any standard library's HMAC but not BLAKE2b.
    static func hmacSHA256(_ message: [UInt8], key: [UInt8]) -> [UInt8] {
        Sodium.ensureReady()
        var state = crypto_auth_hmacsha256_state()
        var out = [UInt8](repeating: 0, count: Int(crypto_auth_hmacsha256_BYTES))
        _ = crypto_auth_hmacsha256_init(&state, key, key.count)
        _ = crypto_auth_hmacsha256_update(&state, message, UInt64(message.count))
        _ = crypto_auth_hmacsha256_final(&state, &out)
        return out
    }
}

/// Deterministic sub-keys from a master key (crypto_kdf). Suited to per-purpose keys;
/// never to per-subject erasure keys, which must be random so that deleting them destroys data.
enum KeyDerivation {
    /// Derives a 32-byte sub-key for `context` (exactly 8 ASCII bytes) and `id`.
    static func derive(from master: SecretKey, context: String, id: UInt64, length: Int = 32) -> SecretKey {
        let ctx = Array(context.utf8)
        precondition(ctx.count == Int(crypto_kdf_contextbytes()), "a KDF context is exactly 8 bytes")
        precondition(master.count == Int(crypto_kdf_keybytes()), "a KDF master key is 32 bytes")
        let cctx = ctx.map { CChar(bitPattern: $0) }
        let key = SecretKey.filled(count: length) { out in
            cctx.withUnsafeBufferPointer { crypto_kdf_derive_from_key(out, length, id, $0.baseAddress!, master.typedPointer) }
        }
        guard let key else { preconditionFailure("crypto_kdf cannot fail for valid lengths") }
        return key
    }
}

extension Array where Element == UInt8 {
    /// Appends `s` as a 4-byte big-endian length followed by its UTF-8 bytes: the unambiguous field encoding that
    /// every hash chain, associated data and token input in Veil is built from.
    public mutating func appendLengthPrefixed(_ s: String) {
        let n = UInt32(truncatingIfNeeded: s.utf8.count)
        append(UInt8(truncatingIfNeeded: n >> 24)); append(UInt8(truncatingIfNeeded: n >> 16))
        append(UInt8(truncatingIfNeeded: n >> 8)); append(UInt8(truncatingIfNeeded: n))
        append(contentsOf: s.utf8)
    }

    /// Lower-case hexadecimal.
    public var hexString: String {
        // Written straight into the string's storage: tokens and hashes are rendered several times per request.
        String(unsafeUninitializedCapacity: count * 2) { out in
            func digit(_ n: UInt8) -> UInt8 { n < 10 ? n + 48 : n + 87 }
            var i = 0
            for byte in self {
                out[i] = digit(byte >> 4)
                out[i + 1] = digit(byte & 0x0f)
                i += 2
            }
            return i
        }
    }

    /// Parses hexadecimal; nil on odd length or a non-hex character.
    public init?(hexString: String) {
        let utf8 = Array(hexString.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(utf8.count / 2)
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var i = 0
        while i < utf8.count {
            guard let hi = value(utf8[i]), let lo = value(utf8[i + 1]) else { return nil }
            bytes.append(hi << 4 | lo)
            i += 2
        }
        self = bytes
    }
}
