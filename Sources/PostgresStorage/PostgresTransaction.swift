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
    private let rollbackHooks = Mutex<[@Sendable () -> Void]>([])

    init(connection: PostgresConnection, logger: Logger, readOnly: Bool) {
        self.connection = connection
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
        try connection.query(query, logger: logger).wait().rows
    }

    /// Runs `query`; returns how many rows it inserted, updated or deleted.
    @discardableResult
    func run(_ query: PostgresQuery) throws -> Int {
        try connection.query(query, logger: logger).wait().metadata.rows ?? 0
    }

    /// The first column of the first row, if any.
    func value<T: PostgresDecodable>(_ query: PostgresQuery, as type: T.Type = T.self) throws -> T? {
        guard let row = try rows(query).first else { return nil }
        return try row.decode(T.self)
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
