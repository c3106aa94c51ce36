import CSodium

/// Secret key bytes held in locked memory and wiped when the last reference goes away.
///
/// The bytes are reachable only through ``withUnsafeBytes(_:)``; `description` never shows them.
/// Immutable after creation, hence safe to share across tasks.
final class SecretKey: @unchecked Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    private let pointer: UnsafeMutableRawBufferPointer

    /// The key length in bytes.
    var count: Int { pointer.count }

    /// Creates a key of `count` random bytes.
    convenience init(randomCount count: Int) {
        Sodium.ensureReady()
        self.init(uninitializedCount: count)
        randombytes_buf(pointer.baseAddress!, count)
    }

    /// Copies `bytes` into locked memory. The caller should wipe its own copy.
    /// - Throws: ``VaultError/Code/invalidKeyLength`` when `expectedCount` is given and differs.
    convenience init(copying bytes: [UInt8], expectedCount: Int? = nil) throws {
        if let expectedCount, bytes.count != expectedCount {
            throw VaultError(.invalidKeyLength, "key must be \(expectedCount) bytes, found \(bytes.count)")
        }
        guard !bytes.isEmpty else { throw VaultError(.invalidKeyLength, "key must not be empty") }
        self.init(uninitializedCount: bytes.count)
        bytes.withUnsafeBytes { pointer.copyMemory(from: $0) }
    }

    /// Allocates locked memory that the caller fills.
    init(uninitializedCount count: Int) {
        Sodium.ensureReady()
        precondition(count > 0)
        pointer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        // Best effort: without CAP_IPC_LOCK or with a low RLIMIT_MEMLOCK the lock can fail; the key still works
        // and is still wiped on release.
        _ = sodium_mlock(pointer.baseAddress!, count)
    }

    /// Builds a key by letting `fill` write exactly `count` bytes.
    static func filled(count: Int, _ fill: (UnsafeMutablePointer<UInt8>) -> Int32) -> SecretKey? {
        let key = SecretKey(uninitializedCount: count)
        let status = fill(key.pointer.baseAddress!.assumingMemoryBound(to: UInt8.self))
        return status == 0 ? key : nil
    }

    deinit {
        // sodium_munlock wipes the bytes before unlocking them.
        _ = sodium_munlock(pointer.baseAddress!, pointer.count)
        sodium_memzero(pointer.baseAddress!, pointer.count)
        pointer.deallocate()
    }

    /// Gives scoped read access to the key bytes. Do not let the pointer escape.
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(pointer))
    }

    /// Copies the bytes out, for writing a key file. The caller must wipe the array.
    func exportBytes() -> [UInt8] { Array(UnsafeRawBufferPointer(pointer)) }

    var typedPointer: UnsafePointer<UInt8> {
        UnsafePointer(pointer.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }

    var description: String { "SecretKey(\(count) bytes, redacted)" }
    var debugDescription: String { description }
}

extension Array where Element == UInt8 {
    /// Overwrites the array's bytes with zeros (for transient copies of key material).
    mutating func wipe() {
        withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { sodium_memzero(base, buffer.count) }
        }
    }
}
