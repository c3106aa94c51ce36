import Foundation
import Logging
import NIOPosix
import Persistence
import PostgresNIO
import PostgresStorage
import Storage
import TestSupport
import Testing

/// The attacker who copies the database server's files: after an erasure on PostgreSQL, the shredded key's wrapped
/// bytes are in no file of the key store. Not while a snapshot older than the shredding is still open (the rewrite
/// would copy the row such a snapshot may see, so it waits and is deferred), and not once that snapshot has ended.
@Suite struct PostgresScrubTests {
    @Test func aShreddedKeyLeavesTheKeyStoresFiles() async throws {
        let settings = try TestBackend.freshDatabase()
        let store = try PostgresStore(settings: settings)
        let admin = try Admin(settings)
        defer { admin.close() }
        let marker = Array("veil-wrapped-key-\(UUID().uuidString)".utf8)
        let owner = "t1#personalization"
        try await store.write { try $0.insertSubjectKey(owner: owner, version: 1, wrapped: marker, createdAt: 1) }
        try admin.run("CHECKPOINT")
        #expect(try admin.keyStoreFilesContain(marker), "the test must see the key in the files before it is shredded")

        // A read that took its snapshot before the shredding, still open. It reads another table: it holds no lock on
        // the key store (which would make the rewrite wait anyway), only a snapshot in which the key row still lives.
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? store.readBlocking { tx in
                _ = try tx.consentHead()
                started.signal()
                release.wait()
            }
            finished.signal()
        }
        started.wait()
        try await store.write { _ = try $0.deleteSubjectKey(owner: owner, shreddedAt: 2) }
        #expect(await store.scrubAfterErasure() != .done, "a rewrite while an older snapshot is open would keep the row")
        release.signal()
        finished.wait()

        // Other tests' transactions on this server can make the rewrite wait its turn (deferred), as in KeyRoleTests.
        var scrub = await store.scrubAfterErasure()
        for _ in 0..<240 where scrub != .done {
            try await Task.sleep(for: .milliseconds(500))
            scrub = await store.scrubAfterErasure()
        }
        #expect(scrub == .done, "\(scrub)")
        try admin.run("CHECKPOINT")
        #expect(try !admin.keyStoreFilesContain(marker), "the shredded key's bytes are still in the key store's files")
        #expect(try await store.read { try $0.wrappedSubjectKey(owner: owner) } == nil)
    }
}

/// A superuser connection of the test server, to checkpoint and find the key store's files.
final class Admin: @unchecked Sendable {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let connection: PostgresConnection
    let logger = Logger(label: "test.admin")

    init(_ settings: PostgresSettings) throws {
        let configuration = PostgresConnection.Configuration(
            host: settings.host, port: settings.port, username: settings.user, password: settings.password, database: settings.database,
            tls: .disable)
        connection = try PostgresConnection.connect(on: group.next(), configuration: configuration, id: 1, logger: logger).wait()
    }

    func run(_ query: PostgresQuery) throws { _ = try connection.query(query, logger: logger).wait() }

    func text(_ query: PostgresQuery) throws -> String {
        try connection.query(query, logger: logger).wait().rows.first!.decode(String.self)
    }

    /// Whether any file (every segment) of the key store's two tables holds `bytes`.
    func keyStoreFilesContain(_ bytes: [UInt8]) throws -> Bool {
        let dataDirectory = try text("SHOW data_directory")
        for table in ["veil_keys.subject_keys", "veil_keys.shredded_subjects"] {
            let relative = try text("SELECT pg_relation_filepath(\(table)::regclass)")
            let base = dataDirectory + "/" + relative
            var segment = 0
            while true {
                let path = segment == 0 ? base : "\(base).\(segment)"
                guard let data = FileManager.default.contents(atPath: path) else { break }
                if data.range(of: Data(bytes)) != nil { return true }
                segment += 1
            }
            #expect(segment > 0, "no file found for \(table) at \(base) (the test must run where it can read the server's files)")
        }
        return false
    }

    func close() {
        try? connection.close().wait()
        try? group.syncShutdownGracefully()
    }
}
