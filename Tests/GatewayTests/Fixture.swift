import Audit
import FeatureStore
import GRDB
import SQLiteStorage
import PostgresStorage
import Persistence
import TestSupport
import Pseudonymization
import Storage
import Synchronization
import Foundation
import Serving
import VeilCore
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Policy
import Testing
import Vault

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A fresh Veil instance in a temporary directory with one principal per role (plus a revoked one).
struct GatewayFixture {
    let root: String
    let service: VeilService
    /// role → API key
    var keys: [String: String] = [:]
    let revokedKey: String
    let otherNamespaceAppKey: String

    init(
        cacheTTL: TimeInterval = 30, cacheMaxEntries: Int = 50_000, rateLimits: [String: RateLimit] = RateLimiter.defaults,
        serving: ServingOptions = ServingOptions(),
        ingestion: IngestionSettings = IngestionSettings(), quality: QualityThresholds = QualityThresholds(), experiments: [ExperimentSpec] = [],
        canary: CanarySettings = CanarySettings(), campaigns: [Campaign] = [], logger: Logger? = nil, sharedIdentities: [String] = [],
        refusalLimits: RefusalLimits = RefusalLimits(),
        now: @escaping @Sendable () -> Date = Date.init, backend: TestBackend = .current, sharedDatabase: Bool = false,
        sharing other: GatewayFixture? = nil, auditLogName: String? = nil, auditHeadInterval: Int64 = 50
    ) throws {
        root = NSTemporaryDirectory() + "veil-gw-\(UUID().uuidString)"
        var policies = repositoryRoot.appendingPathComponent("Policies").path
        if !sharedIdentities.isEmpty {
            // The shipped policy with one group of namespaces that share identities (Policies/identities.yaml).
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: policies, toPath: root + "/Policies")
            policies = root + "/Policies"
            try "shared_identities:\n  shop: [\(sharedIdentities.joined(separator: ", "))]\n".write(
                toFile: policies + "/identities.yaml", atomically: true, encoding: .utf8)
        }
        // A second gateway on the same database shares the first one's keys, as gateways behind one load balancer do.
        let paths = RuntimePaths(dataDirectory: root + "/data", keysDirectory: (other?.root ?? root) + "/Keys", policiesDirectory: policies)
        if other == nil { try KeyRing.initialize(directory: paths.keysDirectory) }
        let store: any OperationalStore
        if let first = other?.service.store as? PostgresStore {
            var settings = first.settings
            settings.shared = true
            store = try PostgresStore(settings: settings)
        } else {
            precondition(other == nil, "gateways share a PostgreSQL database only")
            store = try openStore(paths, backend: backend, shared: sharedDatabase)
        }
        var quiet = Logger(label: "veil-test")
        quiet.logLevel = .critical
        let logger = logger ?? quiet
        service = try VeilService(
            paths: paths, store: store, passphrase: nil, cacheTTL: cacheTTL, cacheMaxEntries: cacheMaxEntries, checkpointInterval: auditHeadInterval,
            trainingThreads: 1,
            rateLimits: rateLimits, serving: serving,
            ingestion: ingestion, quality: quality, experiments: experiments, canary: canary, campaigns: campaigns,
            // Heads by count and on request only: a timer head would land wherever a starved run lets 30 s pass.
            checkpointMaxAge: nil, auditLogName: auditLogName, refusalLimits: refusalLimits, logger: logger, now: now)
        if let other {
            (keys, revokedKey, otherNamespaceAppKey) = (other.keys, other.revokedKey, other.otherNamespaceAppKey)
            return
        }
        let roles = Set(service.policy.roles.keys)
        for role in roles.sorted() {
            // A browser key needs the origins of its pages (a request names its own in `Origin`).
            let origins = role == Role.browser ? [Self.shopOrigin] : []
            keys[role] = try service.principals.add(name: "p-\(role)", role: role, origins: origins, knownRoles: roles)
        }
        revokedKey = try service.principals.add(name: "gone", role: "admin", knownRoles: roles)
        try service.principals.revoke(name: "gone")
        otherNamespaceAppKey = try service.principals.add(name: "other-app", role: "app", namespace: "tenant-b", knownRoles: roles)
    }

    /// The origin the fixture's browser key is bound to.
    static let shopOrigin = "https://shop.example"

    var app: some ApplicationProtocol {
        Application(router: GatewayRouter.build(service: service))
    }

    func headers(_ key: String?, _ extra: [String: String] = [:]) -> HTTPFields {
        var h = HTTPFields()
        if let key { h[.authorization] = "Bearer \(key)" }
        h[.contentType] = "application/json"
        for (k, v) in extra { h[HTTPField.Name(k)!] = v }
        return h
    }

    var auditCount: Int64 { service.audit.count }
}

extension TestClientProtocol {
    /// Sends a request and returns status and decoded JSON (or nil for non-JSON bodies).
    @discardableResult
    func call(
        _ method: HTTPRequest.Method, _ uri: String, key: String?, json: Any? = nil, raw: [UInt8]? = nil, headers extra: [String: String] = [:]
    )
        async throws -> (status: Int, json: [String: Any], headers: HTTPFields, body: String)
    {
        var h = HTTPFields()
        if let key { h[.authorization] = "Bearer \(key)" }
        h[.contentType] = "application/json"
        for (k, v) in extra { h[HTTPField.Name(k)!] = v }
        var body: ByteBuffer?
        if let json { body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json)) }
        if let raw { body = ByteBuffer(bytes: raw) }
        let response = try await execute(uri: uri, method: method, headers: h, body: body)
        let text = String(buffer: response.body)
        let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
        return (Int(response.status.code), object, response.headers, text)
    }
}

func consent(_ subject: String, _ purpose: String = "personalization", granted: Bool = true) -> [String: Any] {
    ["subject": subject, "purpose": purpose, "granted": granted, "method": "banner", "notice_version": "2026-01", "jurisdiction": "EU"]
}

func pageView(_ id: String, _ subject: String, _ item: String, at: String = "2026-11-20T10:00:00Z") -> [String: Any] {
    ["id": id, "kind": "page_view", "subject": subject, "timestamp": at, "source": "web", "item": item, "dwell_ms": 12000, "scroll_depth": 0.8]
}

/// Synchronous reads of the stores, kept out of async test bodies (where GRDB would pick its async overloads).
extension GatewayFixture {
    func token(_ subject: String) -> SubjectToken { service.tokenizer.token(for: subject) }

    func keyVersionCounts() throws -> [UInt32: Int] { try SubjectKeys.versionCounts(in: service.store) }

    func snapshot() throws -> TrainingSnapshot {
        try service.store.readBlocking { try service.features.trainingSnapshot(in: $0) }
    }

    func hasData(_ subject: String) throws -> Bool {
        try service.store.readBlocking { try service.features.hasData(token(subject), in: $0) }
    }

    func storedInteractions(_ subject: String) throws -> Int {
        try service.store.readBlocking { try service.features.interactions(of: token(subject), in: $0) }.count
    }

    func personalizationKeyExists(_ subject: String) throws -> Bool {
        try service.store.readBlocking { try service.keys.dataKey(for: FeatureStore.keyOwner(token(subject)), in: $0, create: false) } != nil
    }

    /// `pg_dump` of the fixture's PostgreSQL database (data and key store), as an operator's backup holds it.
    func postgresDump() throws -> Data {
        let (status, data) = try postgresTool("pg_dump", [])
        #expect(status == 0 && data.count > 1000, "pg_dump of the fixture's database failed")
        return data
    }

    /// Runs `sql` with `psql` on the fixture's PostgreSQL database, as someone with access to the database would;
    /// returns its output (unaligned, tuples only).
    @discardableResult
    func psql(_ sql: String) throws -> String {
        let (status, data) = try postgresTool("psql", ["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        #expect(status == 0, "psql failed: \(sql)")
        return String(decoding: data, as: UTF8.self)
    }

    private func postgresTool(_ tool: String, _ arguments: [String]) throws -> (Int32, Data) {
        var settings = try PostgresSettings(url: try TestBackend.postgresURL())
        settings.database = try String(contentsOfFile: service.paths.dataDirectory + "/postgres-database", encoding: .utf8)
        let (status, output, _) = try PostgresTools.run(tool, settings, arguments)
        return (status, output)
    }

    /// A live backup of the data file, as an operator takes one.
    func vacuumInto(_ path: String) throws {
        try service.sqlite.pool.writeWithoutTransaction { db in try db.execute(sql: "VACUUM INTO ?", arguments: [path]) }
    }
}

/// The value of one sample on /metrics: `name` with its labels as rendered, e.g. `veil_x_count{route="/a"}`.
func metricSample(_ name: String, in metrics: String) -> Double? {
    metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last!) }
}

/// A clock tests move by hand.
final class TestClock: Sendable {
    private let current: Mutex<Date>
    init(_ start: Date) { current = Mutex(start) }
    func now() -> Date { current.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

extension VeilService {
    /// The SQLite store behind the service, for tests that check its files and tables directly (they run on the
    /// SQLite backend only: see ``sqliteOnly``).
    var sqlite: Store { store as! Store }
}

/// For tests that check SQLite's own files, WAL or SQL: the gateway suite on PostgreSQL (`VEIL_TEST_BACKEND=postgres`)
/// leaves them out, and the same promise is checked on PostgreSQL by tests of its own.
let sqliteOnly = Testing.ConditionTrait.enabled(if: TestBackend.current == .sqlite, "checks the SQLite backend's own files or SQL")

/// The operational store at `paths`, as `veil` opens it: the SQLite file there, or with `VEIL_TEST_BACKEND=postgres`
/// a database of its own on the test server (the same one again when a test restarts the service on `paths`).
/// `shared`: as `storage.gateways: several` (PostgreSQL only).
func openStore(_ paths: RuntimePaths, backend: TestBackend = .current, shared: Bool = false) throws -> any OperationalStore {
    switch backend {
    case .sqlite:
        return try OperationalSchema.open(path: paths.operationalDatabase, keyStorePath: paths.keyStoreDatabase)
    case .postgres:
        let note = paths.dataDirectory + "/postgres-database"
        if let name = try? String(contentsOfFile: note, encoding: .utf8) {
            var settings = try PostgresSettings(url: try TestBackend.postgresURL(), poolSize: 4)
            settings.database = name
            settings.shared = shared
            return try PostgresStore(settings: settings)
        }
        var settings = try TestBackend.freshDatabase()
        settings.shared = shared
        try FileManager.default.createDirectory(atPath: paths.dataDirectory, withIntermediateDirectories: true)
        try settings.database.write(toFile: note, atomically: true, encoding: .utf8)
        return try PostgresStore(settings: settings)
    }
}

extension VeilService {
    /// A service over the test backend at `paths` (a restart in a test).
    convenience init(
        paths: RuntimePaths, passphrase: String?, campaigns: [Campaign] = [], logger: Logger = Logger(label: "veil"),
        now: @escaping @Sendable () -> Date = Date.init
    ) throws {
        try self.init(paths: paths, store: try openStore(paths), passphrase: passphrase, campaigns: campaigns, logger: logger, now: now)
    }
}
