import Foundation
import Synchronization

/// Whether the disks under the data directory and the audit log have room. Set when a write fails for lack of
/// space; readiness then answers 503 `storage_full` until both have room again, so a load balancer stops sending
/// traffic and the server recovers by itself once space returns.
public final class StorageHealth: Sendable {
    private let full = Mutex(false)
    private let directories: [String]
    /// Free bytes below which readiness fails even before a write does.
    static let reserve: UInt64 = 64 << 10
    /// Free bytes needed, after a write failed for lack of space, to call the disk usable again.
    static let recovered: UInt64 = 1 << 20

    init(directories: [String]) { self.directories = directories }

    public func noteFull() { full.withLock { $0 = true } }

    /// Whether the server can write: false while a disk is (still) full.
    public func writable() -> Bool {
        let free = directories.map(Self.freeBytes).min() ?? .max
        return full.withLock { isFull in
            if isFull, free >= Self.recovered { isFull = false }
            return !isFull && free >= Self.reserve
        }
    }

    static func freeBytes(_ directory: String) -> UInt64 {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return .max }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }
}
