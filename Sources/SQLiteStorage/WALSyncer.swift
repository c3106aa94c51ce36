import Foundation
import Storage
import Synchronization

/// Makes committed transactions of a database in WAL mode with `synchronous = NORMAL` durable against a power
/// cut: a caller commits, then awaits ``sync()``, which returns once an `fdatasync` of the WAL file that began
/// after the call has finished. Callers arriving while a sync runs share the next one (group commit), so a burst
/// of consent changes costs one sync, not one each, and the writer never waits for the disk.
public final class WALSyncer: Sendable {
    /// `fdatasync`, or what a test puts in its place to hold it and check the order.
    public typealias SyncFunction = @Sendable (Int32) -> Int32

    private struct State {
        var running = false
        /// Arrived after the sync in progress began: covered by the next one.
        var waiting: [CheckedContinuation<Void, any Error>] = []
        var descriptor: Int32 = -1
        var syncs = 0
    }
    private let path: String
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "veil.store.walsync", qos: .userInitiated)
    private let syncFunction: Mutex<SyncFunction>

    init(walPath: String, sync: @escaping SyncFunction = { fdatasync($0) }) {
        path = walPath
        syncFunction = Mutex(sync)
    }

    deinit {
        let fd = state.withLock { $0.descriptor }
        if fd >= 0 { close(fd) }
    }

    /// Replaces the sync function (tests).
    public func replaceSyncFunction(_ sync: @escaping SyncFunction) { syncFunction.withLock { $0 = sync } }

    /// How many syncs ran.
    public var syncCount: Int { state.withLock { $0.syncs } }

    /// Returns once everything committed before this call is on disk.
    public func sync() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let start = state.withLock { s -> Bool in
                s.waiting.append(continuation)
                if s.running { return false }
                s.running = true
                return true
            }
            if start { queue.async { self.drain() } }
        }
    }

    /// Syncs until nobody waits: each sync begins after the commits of the callers it resumes.
    private func drain() {
        while true {
            let batch = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
                let taken = s.waiting
                s.waiting.removeAll()
                if taken.isEmpty { s.running = false }
                return taken
            }
            if batch.isEmpty { return }
            let result: Result<Void, any Error> = Result { try syncOnce() }
            for continuation in batch { continuation.resume(with: result) }
        }
    }

    private func syncOnce() throws {
        guard let fd = try descriptor() else { return }  // no WAL file: nothing committed is outside the synced main file
        let sync = syncFunction.withLock { $0 }
        guard sync(fd) == 0 else {
            let code = errno
            throw StorageError(code == ENOSPC ? .full : .cannotOpen, "syncing \(path) failed (errno \(code))")
        }
        state.withLock { $0.syncs += 1 }
    }

    /// The WAL's descriptor, reopened if the file was replaced (SQLite deletes it when the last connection closes);
    /// nil when there is no WAL file. A WAL that exists and cannot be opened is an error: skipping its sync would
    /// acknowledge a change that is not on disk.
    private func descriptor() throws -> Int32? {
        var current = stat()
        guard stat(path, &current) == 0 else { return nil }
        let fd = state.withLock { s -> Int32 in
            var held = stat()
            if s.descriptor >= 0, fstat(s.descriptor, &held) == 0, held.st_ino == current.st_ino, held.st_dev == current.st_dev {
                return s.descriptor
            }
            if s.descriptor >= 0 { close(s.descriptor) }
            s.descriptor = open(path, O_RDONLY | O_CLOEXEC)
            return s.descriptor
        }
        guard fd >= 0 else { throw StorageError(.cannotOpen, "cannot open \(path) to sync it (errno \(errno))") }
        return fd
    }
}
