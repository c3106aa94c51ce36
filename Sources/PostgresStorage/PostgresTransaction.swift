import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// One transaction on one connection: every repository of the operational database, each statement waited for on
/// the calling (Dispatch) thread. Lives only inside ``PostgresStore``'s closure.
public final class PostgresTransaction: Sendable {
    let connection: PostgresConnection
    let logger: Logger
    let readOnly: Bool
    /// How long a statement's answer is waited for (the statement timeout and a margin).
    let patience: Double
    /// The store's name in announcements (``InvalidationRepository``).
    let origin: String
    /// The generation this transaction's announcement bumped the database to, if it made one.
    var announced: Int64? { announcedGeneration.withLock { $0 } }
    let announcedGeneration = Mutex<Int64?>(nil)
    private let rollbackHooks = Mutex<[@Sendable () -> Void]>([])

    init(connection: PostgresConnection, logger: Logger, readOnly: Bool, patience: Double, origin: String) {
        self.connection = connection
        self.origin = origin
        self.patience = patience
        self.logger = logger
        self.readOnly = readOnly
    }

    func rolledBack() {
        for hook in rollbackHooks.withLock({ $0 }) { hook() }
    }

    func addRollbackHook(_ body: @escaping @Sendable () -> Void) { rollbackHooks.withLock { $0.append(body) } }

    /// Runs `query`; returns its rows.
    @discardableResult
    func rows(_ query: PostgresQuery) throws -> [PostgresRow] {
        try connection.answer(query, logger: logger, within: patience).rows
    }

    /// Runs `query`; returns how many rows it inserted, updated or deleted.
    @discardableResult
    func run(_ query: PostgresQuery) throws -> Int {
        try connection.answer(query, logger: logger, within: patience).metadata.rows ?? 0
    }

    /// The first column of the first row, if any.
    func value<T: PostgresDecodable>(_ query: PostgresQuery, as type: T.Type = T.self) throws -> T? {
        guard let row = try rows(query).first else { return nil }
        return try row.decode(T.self)
    }
}

extension PostgresConnection {
    /// Runs `query` and waits at most `seconds` for its answer; past that the connection is closed and the statement
    /// fails as unavailable. The server's statement timeout ends slow statements; this ends the wait for a server that
    /// stopped answering without closing the socket (seen across a restart), which would otherwise hold the caller, and
    /// a graceful shutdown behind it, for ever.
    func answer(_ query: PostgresQuery, logger: Logger, within seconds: Double) throws -> PostgresQueryResult {
        let promise = eventLoop.makePromise(of: PostgresQueryResult.self)
        let settled = Mutex(false)
        /// True for the one caller that settles the promise.
        @Sendable func settle(_ result: Result<PostgresQueryResult, any Error>) -> Bool {
            let won = settled.withLock { done in
                defer { done = true }
                return !done
            }
            if won { promise.completeWith(result) }
            return won
        }
        self.query(query, logger: logger).whenComplete { _ = settle($0) }
        let deadline = eventLoop.scheduleTask(in: .milliseconds(Int64(seconds * 1000))) {
            // Only a wait that really timed out closes the connection (an answer that won the race leaves it usable).
            if settle(.failure(PostgresUnavailable(reason: "the database did not answer within \(Int(seconds)) s"))) {
                let _: EventLoopFuture<Void> = self.close()
            }
        }
        defer { deadline.cancel() }
        return try promise.futureResult.wait()
    }
}

/// Bytes as PostgreSQL's `bytea` (an array of `UInt8` would be bound as a `char[]`).
struct Bytes: PostgresNonThrowingEncodable {
    let buffer: ByteBuffer
    init(_ bytes: [UInt8]) { buffer = ByteBuffer(bytes: bytes) }
    static var psqlType: PostgresDataType { .bytea }
    static var psqlFormat: PostgresFormat { .binary }
    func encode<JSONEncoder: PostgresJSONEncoder>(into byteBuffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) {
        var copy = buffer
        byteBuffer.writeBuffer(&copy)
    }
}

extension ByteBuffer {
    var bytes: [UInt8] { Array(readableBytesView) }
}
