import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Persistence
import PostgresNIO
import Storage
import Synchronization

/// Where and how to reach the PostgreSQL database.
public struct PostgresSettings: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    /// `disable`, `prefer` or `require` (as libpq's `sslmode`, except that `require` verifies the server's certificate
    /// and name); by default `prefer`, and `disable` for a server on loopback.
    public var tls: String
    /// Connections kept open (per gateway).
    public var poolSize: Int
    /// A statement running longer is cancelled (milliseconds).
    public var statementTimeoutMs: Int
    /// How long a request waits for a free connection or a connection attempt before it fails (seconds).
    public var connectTimeout: Double
    /// Other gateways serve the same database (`storage.gateways: several`): their announcements are watched.
    public var shared = false
    /// The role that is to own the key store's schema and tables (``PostgresRoleName``), of which the gateway's role
    /// must be a member; nil leaves them with the gateway's role.
    public var keyRole: String?

    /// Reads `postgres://user[:password]@host[:port]/database[?sslmode=…]`.
    /// - Throws: ``StorageError`` naming what is wrong with the URL (never echoing a password).
    public init(url: String, poolSize: Int = 8, statementTimeoutMs: Int = 10_000, connectTimeout: Double = 5) throws {
        guard let c = URLComponents(string: url), c.scheme == "postgres" || c.scheme == "postgresql", let host = c.host, !host.isEmpty else {
            throw StorageError(.cannotOpen, "the database URL must look like postgres://user@host:5432/database")
        }
        let database = String(c.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty else { throw StorageError(.cannotOpen, "the database URL names no database (postgres://user@host/DATABASE)") }
        guard let user = c.user, !user.isEmpty else {
            throw StorageError(.cannotOpen, "the database URL names no user (postgres://USER@host/database)")
        }
        self.host = host
        self.port = c.port ?? 5432
        // URLComponents hands out user and password already percent-decoded.
        self.user = user
        self.password = c.password
        self.database = database
        // As libpq: TLS when the server offers it, unless the server is this machine.
        let loopback = ["localhost", "127.0.0.1", "::1", "[::1]"].contains(host)
        let mode = c.queryItems?.first { $0.name == "sslmode" }?.value ?? (loopback ? "disable" : "prefer")
        guard ["disable", "prefer", "require"].contains(mode) else {
            throw StorageError(.cannotOpen, "sslmode must be disable, prefer or require")
        }
        tls = mode
        self.poolSize = max(1, poolSize)
        self.statementTimeoutMs = max(100, statementTimeoutMs)
        self.connectTimeout = connectTimeout
    }

    /// The URL without its password, for logs and errors.
    public var redacted: String { "postgres://\(user)@\(host):\(port)/\(database)" }
}

/// The operational database in PostgreSQL: the same repositories as the SQLite backend, over a small pool of
/// connections shared by the gateway's requests.
///
/// The core's unit of work is synchronous (a closure over one transaction), so a transaction runs on a Dispatch
/// thread and waits for each statement's future; never on an event loop or a cooperative thread. Writes are
/// serialized across every gateway on the database by a transaction-scoped advisory lock, as SQLite serializes them
/// in one file: the consent ledger's chain, the key store and the counters keep exactly the atomicity they have there.
/// Reads run in read-only REPEATABLE READ snapshots, beside writes.
public final class PostgresStore: Sendable {
    public let settings: PostgresSettings
    let group: MultiThreadedEventLoopGroup
    let logger: Logger
    private let idle = Mutex<[PostgresConnection]>([])
    private let slots: DispatchSemaphore
    private let nextID = Atomic<Int>(0)
    private let tlsContext: NIOSSLContext?
    /// Key-store rewrites started and completed (see ``scrubKeyStore()``).
    private let scrubbing = Mutex((started: 0, completed: 0))
    private let rewriting = Mutex(())
    /// A deferred rewrite is being retried in the background.
    private let retrying = Mutex(false)
    private let writeGate = DispatchSemaphore(value: 1)
    private let lastFailure = Mutex<DispatchTime?>(nil)
    /// This process's own announcements as its watch receives them.
    let echoes = Echoes()
    /// Names this process in its announcements, so that it does not apply its own a second time.
    let origin = (0..<8).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()

    /// How long a statement's answer is waited for: the server's statement timeout ends it first, unless the server stopped
    /// answering.
    var patience: Double { Double(settings.statementTimeoutMs) / 1000 + 1 }

    /// The lock every write transaction takes (and migrations, at start, take at session level).
    static let writeLock: Int64 = 0x7665_696C_0001
    static let migrationLock: Int64 = 0x7665_696C_0002
    /// The schema of the per-subject data keys: apart from the data, so that a dump of the data (`pg_dump -N veil_keys`)
    /// holds no key, and a role can be given the data without the keys.
    public static let keySchema = "veil_keys"

    /// Connects and brings the schema up to date (under an advisory lock, so gateways starting together migrate once).
    public init(settings: PostgresSettings, logger: Logger = Logger(label: "veil.postgres")) throws {
        self.settings = settings
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        slots = DispatchSemaphore(value: settings.poolSize)
        switch settings.tls {
        case "disable": tlsContext = nil
        default:
            do {
                var config = TLSConfiguration.makeClientConfiguration()
                if settings.tls == "prefer" { config.certificateVerification = .none }
                tlsContext = try NIOSSLContext(configuration: config)
            } catch {
                throw StorageError(.cannotOpen, "cannot set up TLS to the database: \(error)")
            }
        }
        do {
            try PostgresSchema.migrate(self)
            if let role = settings.keyRole { try PostgresSchema.giveKeyStore(to: role, self) }
        } catch let error as StorageError {
            // Closes the pooled connection before the loop it runs on stops: closing it after (in deinit) waits for ever.
            close()
            throw error
        } catch {
            close()
            throw StorageError(.migrationFailed, "migrating \(settings.redacted) failed: \(PostgresStore.describe(error))")
        }
    }

    deinit {
        for connection in [sole.withLock({ $0 }), logClaim.withLock({ $0 })].compactMap({ $0 }) { try? connection.close().wait() }
        for connection in idle.withLock({ $0 }) { try? connection.close().wait() }
        try? group.syncShutdownGracefully()
    }

    /// Set by ``close()``: work sent beside a request (an acknowledgement) starts no statement on a loop about to stop.
    let closing = Atomic<Bool>(false)

    /// Closes the connections and stops the store's event loop (a gateway shutting down; the store is unusable after).
    public func close() {
        closing.store(true, ordering: .relaxed)
        let open = idle.withLock { connections -> [PostgresConnection] in
            defer { connections.removeAll() }
            return connections
        }
        for connection in open + [sole.withLock { $0 }, logClaim.withLock { $0 }].compactMap({ $0 }) { try? connection.close().wait() }
        sole.withLock { $0 = nil }
        logClaim.withLock { $0 = nil }
        try? group.syncShutdownGracefully()
    }

    /// Creates the database `name` on the server `settings` reach (connecting to their database to do so), for
    /// tests and demos that want a database of their own; returns settings naming it.
    public static func createDatabase(_ name: String, using settings: PostgresSettings) throws -> PostgresSettings {
        guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }), name.first?.isLetter == true else {
            throw StorageError(.cannotOpen, "a database name of letters, digits and underscores, starting with a letter")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let logger = Logger(label: "veil.postgres.admin")
        let configuration = PostgresConnection.Configuration(
            host: settings.host, port: settings.port, username: settings.user, password: settings.password, database: settings.database,
            tls: .disable)
        do {
            let connection = try PostgresConnection.connect(on: group.next(), configuration: configuration, id: 0, logger: logger).wait()
            defer { try? connection.close().wait() }
            _ = try connection.query("CREATE DATABASE \(unescaped: name) TEMPLATE template0", logger: logger).wait()
        } catch {
            throw StorageError(.cannotOpen, "cannot create database \(name) on \(settings.redacted): \(describe(error))")
        }
        var named = settings
        named.database = name
        return named
    }

    static let gatewayLock: Int64 = 0x7665_696C_0003
    private let sole = Mutex<PostgresConnection?>(nil)
    /// The connection holding this process's claim on its audit log's name (``AuditArchive/claim(log:)``), and the name.
    let logClaim = Mutex<PostgresConnection?>(nil)
    let claimedLog = Mutex<String?>(nil)
    private let claimed = Mutex(false)

    /// Claims the database for as long as the process lives (a session advisory lock on a connection of its own): for
    /// this gateway alone (`gateways: one`, an exclusive lock), or for gateways that all watch each other's
    /// announcements (`several`, a shared lock). Either refuses beside the other: a gateway that does not watch would
    /// serve what the others' changes made stale.
    public func claimGateway() throws {
        let lock = settings.shared ? "pg_try_advisory_lock_shared" : "pg_try_advisory_lock"
        guard let connection = try holding("SELECT \(unescaped: lock)(\(Self.gatewayLock))") else {
            throw StorageError(
                .cannotOpen,
                settings.shared
                    ? "a veil serve with storage.gateways: one runs on \(settings.redacted) and holds it alone; stop it, or give it gateways: several"
                    : "another veil serve already runs on \(settings.redacted); to run several on one database, give each storage.gateways: several")
        }
        sole.withLock { $0 = connection }
        claimed.withLock { $0 = true }
    }

    /// A connection of its own on which `tryLock` (a `pg_try_advisory_lock…` call) took its session lock; nil, the
    /// connection closed, when another session holds it.
    func holding(_ tryLock: PostgresQuery) throws -> PostgresConnection? {
        let connection = try connect()
        do {
            if try connection.answer(tryLock, logger: logger, within: patience).rows.first?.decode(Bool.self) == true { return connection }
        } catch {
            try? connection.close().wait()
            throw error
        }
        try? connection.close().wait()
        return nil
    }

    /// A restart of the server ends the session that held the claim: the readiness check claims it again, and stays
    /// red if another gateway took the database meanwhile.
    private func keepClaim() throws {
        // One re-claim at a time: two probes racing would see each other's lock as another gateway's.
        try reclaiming.withLock { _ in
            if claimed.withLock({ $0 }), sole.withLock({ $0?.isClosed ?? true }) { try claimGateway() }
            // The audit log's name too: a restart ended that session as well.
            if let log = claimedLog.withLock({ $0 }), logClaim.withLock({ $0?.isClosed ?? true }) { try claimLog(log) }
        }
    }
    private let reclaiming = Mutex(())

    // MARK: Connections

    func connect() throws -> PostgresConnection {
        // While the server is down, fail at once for a second after a failed attempt instead of queueing every
        // request behind another connect timeout.
        if let failed = lastFailure.withLock({ $0 }), DispatchTime.now() < failed + 1 {
            throw PostgresUnavailable(reason: "cannot connect to \(settings.redacted) (failed less than a second ago)")
        }
        let tls: PostgresConnection.Configuration.TLS =
            switch settings.tls {
            case "require": .require(tlsContext!)
            case "prefer": .prefer(tlsContext!)
            default: .disable
            }
        var configuration = PostgresConnection.Configuration(
            host: settings.host, port: settings.port, username: settings.user, password: settings.password, database: settings.database,
            tls: tls)
        configuration.options.connectTimeout = .milliseconds(Int64(settings.connectTimeout * 1000))
        do {
            let connection = try PostgresConnection.connect(
                on: group.next(), configuration: configuration, id: nextID.add(1, ordering: .relaxed).newValue, logger: logger
            ).wait()
            do {
                _ = try connection.answer(
                    "SET statement_timeout = \(unescaped: String(settings.statementTimeoutMs))", logger: logger, within: patience)
            } catch {
                try? connection.close().wait()
                throw error
            }
            return connection
        } catch {
            lastFailure.withLock { $0 = .now() }
            throw PostgresUnavailable(reason: "cannot connect to \(settings.redacted): \(PostgresStore.describe(error))")
        }
    }

    /// Runs `body` with a pooled connection; a connection that failed is dropped, not returned to the pool.
    func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        guard slots.wait(timeout: .now() + settings.connectTimeout) == .success else {
            throw PostgresUnavailable(reason: "no database connection was free within \(settings.connectTimeout) s")
        }
        defer { slots.signal() }
        let pooled = idle.withLock { $0.popLast() }
        let connection = try pooled.flatMap { $0.isClosed ? nil : $0 } ?? connect()
        do {
            let result = try body(connection)
            if !connection.isClosed { idle.withLock { $0.append(connection) } }
            return result
        } catch {
            // A statement's error on a healthy connection (a constraint, a timeout) leaves it usable once rolled back;
            // a broken connection is dropped.
            let broken = connection.isClosed || (error as? PSQLError).map { $0.serverInfo == nil } ?? (error is PostgresUnavailable)
            if broken {
                try? connection.close().wait()
            } else {
                idle.withLock { $0.append(connection) }
            }
            throw error
        }
    }

    /// One transaction: BEGIN, `body`, COMMIT; ROLLBACK (and the transaction's rollback hooks) if anything throws.
    /// Writers of this process queue for one gate before they take a connection, so that waiting writers never hold
    /// the connections that reads need; across gateways they queue on the advisory lock.
    /// A write that announced something returns once this process's own watch has received it and every other gateway
    /// heard from in the last 6 s has said it applied it (at most a second: a gateway that stopped answering is not
    /// waited for longer), so that the caller's client finds it in force on any gateway it asks next.
    func transaction<T>(readOnly: Bool, _ body: (PostgresTransaction) throws -> T) throws -> T {
        let (result, announced) = try runTransaction(readOnly: readOnly, body)
        if let announced { echoes.wait(for: announced, timeout: 1) }
        return result
    }

    /// A write transaction that neither queues behind this process's writers nor takes the writer lock: for tables no
    /// other unit of work writes (the audit archive), so that it never holds up a consent change or an event batch.
    func unserializedWrite<T>(_ body: (PostgresTransaction) throws -> T) throws -> T {
        try runTransaction(readOnly: false, serialized: false, body).0
    }

    private func runTransaction<T>(readOnly: Bool, serialized: Bool = true, _ body: (PostgresTransaction) throws -> T) throws -> (T, Int64?) {
        let serialized = serialized && !readOnly
        if serialized {
            let queueing = settings.connectTimeout + Double(settings.statementTimeoutMs) / 1000
            guard writeGate.wait(timeout: .now() + queueing) == .success else {
                throw PostgresUnavailable(reason: "no write could start within \(Int(queueing)) s")
            }
        }
        defer { if serialized { writeGate.signal() } }
        return try withConnection { connection in
            let tx = PostgresTransaction(connection: connection, logger: logger, readOnly: readOnly, patience: patience, origin: origin)
            try tx.run(readOnly ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN")
            do {
                if serialized { try tx.run("SELECT pg_advisory_xact_lock(\(Self.writeLock))") }
                let result = try body(tx)
                // An aborted transaction answers COMMIT with ROLLBACK and no error: that is a failure, never a success.
                let tag = try connection.answer("COMMIT", logger: logger, within: patience).metadata.command
                guard tag == "COMMIT" else { throw PostgresUnavailable(reason: "the server rolled the transaction back") }
                return (result, tx.announced)
            } catch {
                do {
                    try tx.run("ROLLBACK")
                } catch {
                    // The connection is in no state to be reused.
                    try? connection.close().wait()
                }
                tx.rolledBack()
                throw error
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let info = error.serverInfo {
                // The SQLSTATE and the server's message; never the detail, which can quote a row's values.
                return "\(info[.sqlState] ?? "?"): \(info[.message] ?? "no message")"
            }
            return "\(error.code)"
        }
        if let error = error as? PostgresUnavailable { return error.reason }
        if let error = error as? PostgresError { return error.description }
        return String(describing: type(of: error))
    }
}

extension PostgresStore: TransactionRunner {
    public typealias Transaction = PostgresTransaction

    public func read<T: Sendable>(_ body: @Sendable (PostgresTransaction) throws -> T) async throws -> T {
        try await withoutActuallyEscaping(body) { body in
            try await Self.offThread { try self.transaction(readOnly: true, body) }
        }
    }

    public func write<T: Sendable>(_ body: @Sendable (PostgresTransaction) throws -> T) async throws -> T {
        try await withoutActuallyEscaping(body) { body in
            try await Self.offThread { try self.transaction(readOnly: false, body) }
        }
    }

    public func readBlocking<T>(_ body: (PostgresTransaction) throws -> T) throws -> T { try transaction(readOnly: true, body) }
    public func writeBlocking<T>(_ body: (PostgresTransaction) throws -> T) throws -> T { try transaction(readOnly: false, body) }

    /// Runs blocking database work on a Dispatch thread: waiting for a statement must never hold a cooperative thread.
    /// The work is dropped before the caller resumes, so that a closure lent by `withoutActuallyEscaping` is
    /// released before that scope ends.
    static func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let work = Lent(body)
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .userInitiated).async {
                let result = Result { try work.run() }
                continuation.resume(with: result)
            }
        }
    }
}

/// A closure run once, then let go of.
private final class Lent<T>: @unchecked Sendable {
    private var body: (@Sendable () throws -> T)?
    init(_ body: @escaping @Sendable () throws -> T) { self.body = body }
    func run() throws -> T {
        let body = self.body!
        self.body = nil
        return try body()
    }
}

extension PostgresStore: OperationalStore {
    /// A commit is durable when it returns (`synchronous_commit` is PostgreSQL's default, on).
    public func syncCommitted() async throws {}

    /// PostgreSQL keeps a deleted row's bytes in its table file until the page is reused or the table is rewritten: after
    /// an erasure or a withdrawal the key store's tables are rewritten (VACUUM FULL, a new file without the shredded
    /// keys; the key store holds one short row per subject, so this takes milliseconds to about a second and locks only
    /// the key store). The server's write-ahead log still holds the deleted rows' images until its segments are
    /// recycled, which the README states. One rewrite at a time; a rewrite that cannot take its lock in time is
    /// deferred.
    public func scrubAfterErasure() async -> ErasureScrub {
        do {
            try await Self.offThread { try self.scrubKeyStore() }
            return .done
        } catch {
            retryScrubLater()
            return .deferred(reason: "rewriting the key store failed: \(Self.describe(error)); retried every second until done")
        }
    }

    /// VACUUM FULL copies into the new file every deleted row that some open snapshot may still see; so first every
    /// snapshot older than this rewrite must end (at most two seconds, else the rewrite is deferred). It waits at most
    /// two seconds for readers of the key store, and checks that each table really got a new file (VACUUM FULL of a
    /// table the role does not own only warns).
    private func rewriteKeyStore(on connection: PostgresConnection) throws {
        func one<T: PostgresDecodable>(_ query: PostgresQuery, _ type: T.Type) throws -> T? {
            try connection.answer(query, logger: logger, within: patience).rows.first.map { try $0.decode(T.self) }
        }
        let horizon = try one("SELECT pg_snapshot_xmax(pg_current_snapshot())::TEXT", String.self) ?? "0"
        let deadline = DispatchTime.now() + 2
        while true {
            let older =
                try one(
                    """
                    SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (
                        (backend_xmin IS NOT NULL AND age(backend_xmin) > age(\(horizon)::xid))
                        OR (backend_xid IS NOT NULL AND age(backend_xid) > age(\(horizon)::xid)))
                    """, Int64.self) ?? 0
            if older == 0 { break }
            guard DispatchTime.now() < deadline else {
                throw PostgresUnavailable(reason: "\(older) transaction(s) older than the shredding still run")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        _ = try connection.answer("SET lock_timeout = '2s'", logger: logger, within: patience)
        defer { _ = try? connection.answer("SET lock_timeout = 0", logger: logger, within: patience) }
        for table in ["subject_keys", "shredded_subjects"] {
            let name = "\(Self.keySchema).\(table)"
            let before = try one("SELECT pg_relation_filenode(\(name)::regclass)::BIGINT", Int64.self)
            // A rewrite copies the table: bounded by the statement timeout like any statement, and waited for as long.
            _ = try connection.answer("VACUUM FULL \(unescaped: name)", logger: logger, within: patience)
            let after = try one("SELECT pg_relation_filenode(\(name)::regclass)::BIGINT", Int64.self)
            guard before != after else {
                throw StorageError(.cannotOpen, "VACUUM FULL did not rewrite \(name): the database role must own the key store's tables")
            }
        }
    }

    /// Retries a deferred rewrite every second until one succeeds (one retrier at a time).
    func retryScrubLater() {
        guard
            retrying.withLock({ busy in
                defer { busy = true }
                return !busy
            })
        else { return }
        scheduleScrubAttempt()
    }

    private func scheduleScrubAttempt() {
        DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + 1) { [weak self] in
            guard let self else { return }
            do {
                try self.scrubKeyStore()
                self.retrying.withLock { $0 = false }
            } catch {
                self.scheduleScrubAttempt()
            }
        }
    }

    public func isReachable() async -> Bool {
        let answered = try? await Self.offThread {
            try self.keepClaim()
            return try self.withConnection { try $0.answer("SELECT 1", logger: self.logger, within: self.patience).count }
        }
        return answered == 1
    }

    /// Rewrites the key store's tables, so that shredded keys leave its files (VACUUM FULL takes an exclusive lock on
    /// them for as long as the rewrite lasts: seconds for a million subjects).
    /// Callers that arrive while a rewrite runs share the next one: a rewrite that started after a caller arrived (and
    /// so after its shredding committed) covers it.
    public func scrubKeyStore() throws {
        let arrived = scrubbing.withLock { $0.started }
        try rewriting.withLock { _ in
            guard scrubbing.withLock({ $0.completed <= arrived }) else { return }
            let generation = scrubbing.withLock { state -> Int in
                state.started += 1
                return state.started
            }
            try withConnection { connection in try rewriteKeyStore(on: connection) }
            scrubbing.withLock { $0.completed = max($0.completed, generation) }
        }
    }
}

/// The database did not answer (refused, timed out, restarting): a request fails with 503 and Retry-After.
public struct PostgresUnavailable: Error, CustomStringConvertible, BackendError {
    public let reason: String
    public var description: String { reason }
    public var isDiskFull: Bool { false }
    public var isUnavailable: Bool { true }
    public var loggableReason: String { "PostgreSQL unavailable: \(reason)" }
}

extension PSQLError: BackendError {
    /// SQLSTATE 53100 (disk_full) or 53200 (out_of_memory) on the server.
    public var isDiskFull: Bool { serverInfo?[.sqlState] == "53100" }
    /// The connection broke, the server is shutting down or starting, or a statement ran past its timeout (SQLSTATE
    /// classes 08 and 57).
    public var isUnavailable: Bool {
        guard let state = serverInfo?[.sqlState] else { return code != .server }
        return state.hasPrefix("08") || state.hasPrefix("57")
    }
    public var loggableReason: String { "PostgreSQL error \(PostgresStore.describe(self))" }
}
