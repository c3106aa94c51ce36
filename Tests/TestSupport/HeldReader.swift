import Foundation
import GRDB

/// Holds a read transaction open on another thread until released: what a long export or training read does.
public final class HeldReader: Sendable {
    private let started = DispatchSemaphore(value: 0)
    private let release = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)

    /// Returns once the read transaction has read from `table`.
    public init(_ pool: DatabasePool, table: String) {
        DispatchQueue.global().async { [started, release, done] in
            _ = try? pool.read { db in
                _ = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)")
                started.signal()
                release.wait()
            }
            done.signal()
        }
        started.wait()
    }

    /// Ends the read transaction and waits until it has.
    public func end() {
        release.signal()
        done.wait()
    }
}
