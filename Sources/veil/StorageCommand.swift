import ArgumentParser
import Foundation
import Persistence
import PostgresStorage
import SQLiteStorage

struct StorageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage", abstract: "Look after the operational database.", subcommands: [Scrub.self, Check.self])

    struct Scrub: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rewrite the key store so that shredded keys leave the database files.",
            discussion: """
                SQLite: checkpoints and truncates the write-ahead log (erasure does this itself when it can). \
                PostgreSQL: VACUUM FULL of the key store's tables (a deleted row's bytes stay in a table's file until it \
                is rewritten); it locks the key store for as long as the rewrite lasts, so run it at a quiet time.
                """)
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let store = try Backend.open(common)
            switch store {
            case let postgres as PostgresStore:
                try postgres.scrubKeyStore()
                print("key store rewritten (VACUUM FULL of \(PostgresStore.keySchema).subject_keys and shredded_subjects)")
            case let sqlite as Store:
                try await sqlite.checkpointAndTruncate()
                print("write-ahead log checkpointed and truncated")
            default:
                throw CLIError(message: "this backend has no scrub")
            }
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open the operational database, apply its migrations and say whether it answers.")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let store = try Backend.open(common)
            guard await store.isReachable() else { throw CLIError(message: "the database does not answer") }
            print(store is PostgresStore ? "PostgreSQL: migrated and answering" : "SQLite: migrated and answering")
        }
    }
}
