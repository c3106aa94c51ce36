import CSodium
import Synchronization

/// Hands out random nonces from a buffer refilled 4 KiB at a time.
///
/// A `getrandom` call per nonce costs about a third of a small seal; buffering keeps the nonces
/// uniformly random (never a counter) while paying the system call once per 170 nonces.
final class NonceSource: Sendable {
    static let shared = NonceSource()

    private struct Buffer {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var offset = 4096
    }

    private let state = Mutex(Buffer())

    func fill(_ destination: UnsafeMutableRawPointer, count: Int) {
        Sodium.ensureReady()
        state.withLock { buffer in
            if buffer.offset + count > buffer.bytes.count {
                buffer.bytes.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) }
                buffer.offset = 0
            }
            buffer.bytes.withUnsafeMutableBytes { source in
                destination.copyMemory(from: source.baseAddress! + buffer.offset, byteCount: count)
                // Wipe what was handed out so that no nonce is ever handed out twice.
                sodium_memzero(source.baseAddress! + buffer.offset, count)
            }
            buffer.offset += count
        }
    }
}
