import CSodium

/// Initialises libsodium exactly once per process.
enum Sodium {
    private static let initialised: Bool = sodium_init() >= 0

    /// Call before any libsodium function; cheap after the first call.
    @inline(__always)
    static func ensureReady() {
        precondition(initialised, "libsodium failed to initialise")
    }

    /// Fills `count` bytes with cryptographically secure random data.
    static func randomBytes(_ count: Int) -> [UInt8] {
        ensureReady()
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) }
        return bytes
    }

    /// Constant-time comparison; false when lengths differ.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in sodium_memcmp(pa.baseAddress!, pb.baseAddress!, a.count) == 0 }
        }
    }
}

/// Random bytes and constant-time comparison for the rest of Veil, so that no other module imports libsodium.
public enum SecureRandom {
    /// `count` bytes from the operating system's CSPRNG.
    public static func bytes(_ count: Int) -> [UInt8] { Sodium.randomBytes(count) }

    /// Compares two byte strings in time that depends only on their length.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool { Sodium.constantTimeEqual(a, b) }
}
