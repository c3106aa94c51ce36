import Foundation
import Persistence
import PostgresNIO
import PostgresStorage
import Storage
import TestSupport
import Testing

/// The key store under a role of its own (`storage.key_role`): the gateway, a member of that role, keeps every key
/// operation; a role that is not a member (a backup job's, an analyst's) reads the data and can neither read nor dump
/// a key.
@Suite struct KeyRoleTests {
    @Test func aRoleOutsideTheKeyRoleReadsTheDataButNeverAKey() async throws {
        let created = try TestBackend.freshDatabase()
        let admin = try Admin(created)
        defer { admin.close() }
        let n = UUID().uuidString.prefix(8).lowercased()
        let (keyRole, gateway, backup, stranger) = ("vk_\(n)", "vg_\(n)", "vb_\(n)", "vs_\(n)")
        try admin.run("CREATE ROLE \(unescaped: keyRole) NOLOGIN")
        for role in [gateway, backup, stranger] { try admin.run("CREATE ROLE \(unescaped: role) LOGIN") }
        try admin.run("GRANT \(unescaped: keyRole) TO \(unescaped: gateway)")
        try admin.run("ALTER DATABASE \(unescaped: created.database) OWNER TO \(unescaped: gateway)")
        try admin.run("ALTER SCHEMA public OWNER TO \(unescaped: gateway)")

        var settings = created
        settings.user = gateway
        settings.keyRole = keyRole
        let store = try PostgresStore(settings: settings)
        defer { store.close() }
        let marker = Array("veil-wrapped-key-\(UUID().uuidString)".utf8)
        try await store.write { try $0.insertSubjectKey(owner: "t1#personalization", version: 1, wrapped: marker, createdAt: 1) }
        #expect(try await store.read { try $0.wrappedSubjectKey(owner: "t1#personalization") } == marker)
        #expect(try admin.text("SELECT nspowner::regrole::TEXT FROM pg_namespace WHERE nspname = 'veil_keys'") == keyRole)
        #expect(try admin.text("SELECT tableowner::TEXT FROM pg_tables WHERE schemaname = 'veil_keys' AND tablename = 'subject_keys'") == keyRole)

        // What a backup job is given: the data, not the keys.
        try admin.run("GRANT USAGE ON SCHEMA public TO \(unescaped: backup)")
        try admin.run("GRANT SELECT ON ALL TABLES IN SCHEMA public TO \(unescaped: backup)")
        try admin.run("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO \(unescaped: backup)")
        var asBackup = created
        asBackup.user = backup
        let reader = try Admin(asBackup)
        defer { reader.close() }
        #expect(try reader.text("SELECT COUNT(*)::TEXT FROM consent_events") == "0")
        #expect(throws: (any Error).self) { try reader.text("SELECT encode(wrapped, 'hex') FROM veil_keys.subject_keys") }
        // Even ALL granted to everyone on the data leaves the key schema closed: its owner is the key role.
        try admin.run("GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC")
        #expect(throws: (any Error).self) { try reader.text("SELECT encode(wrapped, 'hex') FROM veil_keys.subject_keys") }
        let whole = try pgDump(asBackup, [])
        #expect(whole.status != 0, "a dump by a role outside the key role must not get the key store")
        #expect(whole.output.range(of: Data(marker)) == nil)
        let data = try pgDump(asBackup, ["-N", "veil_keys"])
        #expect(data.status == 0 && data.output.range(of: Data("consent_events".utf8)) != nil, "\(data.error)")
        #expect(data.output.range(of: Data(marker)) == nil)

        // A login role that could read the keys another way (pg_read_all_data, the usual backup grant) is refused: the
        // gateway does not start while one can; without it, a second start finds the store handed over already.
        try admin.run("GRANT pg_read_all_data TO \(unescaped: backup)")
        #expect {
            _ = try PostgresStore(settings: settings)
        } throws: { error in
            "\(error)".contains("can read the key store") && "\(error)".contains(backup)
        }
        try admin.run("REVOKE pg_read_all_data FROM \(unescaped: backup)")
        let again = try PostgresStore(settings: settings)
        again.close()

        // The gateway, a member, still shreds and rewrites the key store (VACUUM FULL needs the owner's rights).
        try await store.write { _ = try $0.deleteSubjectKey(owner: "t1#personalization", shreddedAt: 2) }
        // Other tests' transactions on this server can make a rewrite wait its turn (deferred); a role without the
        // owner's rights never gets it done.
        var scrub = await store.scrubAfterErasure()
        for _ in 0..<60 where scrub != .done {
            try await Task.sleep(for: .milliseconds(500))
            scrub = await store.scrubAfterErasure()
        }
        #expect(scrub == .done, "\(scrub)")

        // A gateway's role outside the key role is refused at start, with the fix (on a database it may migrate).
        var outsider = try TestBackend.freshDatabase()
        try admin.run("ALTER DATABASE \(unescaped: outsider.database) OWNER TO \(unescaped: stranger)")
        let admin2 = try Admin(outsider)
        defer { admin2.close() }
        try admin2.run("ALTER SCHEMA public OWNER TO \(unescaped: stranger)")
        outsider.user = stranger
        outsider.keyRole = keyRole
        #expect {
            _ = try PostgresStore(settings: outsider)
        } throws: { error in
            "\(error)".contains("GRANT \(keyRole) TO \(stranger)")
        }
        // And a key role that does not exist.
        var missing = settings
        missing.keyRole = "vk_missing_\(n)"
        #expect {
            _ = try PostgresStore(settings: missing)
        } throws: { error in
            "\(error)".contains("does not exist")
        }
    }

    private func pgDump(_ settings: PostgresSettings, _ arguments: [String]) throws -> (status: Int32, output: Data, error: String) {
        try PostgresTools.run("pg_dump", settings, arguments)
    }
}
