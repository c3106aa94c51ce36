import Policy
import ArgumentParser
import Audit
import Gateway
import VeilCore
import Storage
import SQLiteStorage
import Vault
import Recommender

struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create, rotate and retire the key ring; re-wrap stored data keys.",
        subcommands: [Init.self, Rotate.self, Rewrap.self, Retire.self, Status.self]
    )

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a master key, a pseudonymization key and an Ed25519 audit key pair.",
            discussion: "With VEIL_PASSPHRASE set, the master key is derived with Argon2id and only its salt is stored.")
        @OptionGroup var common: CommonOptions

        func run() throws {
            let ring = try KeyRing.initialize(directory: try common.paths().keysDirectory, passphrase: common.passphrase)
            print("created key ring in \(ring.directory): master v\(ring.currentVersion), pseudonym key, audit key pair")
            print("audit public key: \(ring.auditSigner.publicKey.bytes.hexString) (also in \(ring.directory)/audit.pub)")
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a new master key version; new data keys are wrapped under it, old ones still open.")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let version = try KeyRing.rotate(directory: try common.paths().keysDirectory, passphrase: common.passphrase)
            try await auditKeyEvent(common, action: Action.keysRotate.rawValue, reason: "master key v\(version) added")
            print("master key v\(version) is now current; run `veil keys rewrap` to move stored data keys to it")
        }
    }

    struct Rewrap: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-wrap every stored subject data key under the current master key, in batches.",
            discussion: "Each batch is one transaction: the command can be interrupted and run again.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Keys per transaction.") var batchSize: Int = 500

        func validate() throws {
            guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        }

        func run() async throws {
            let ring = try KeyRing.load(directory: try common.paths().keysDirectory, passphrase: common.passphrase)
            let store = try Backend.open(common)
            let keys = SubjectKeys(ring: ring)
            let progress = TerminalProgress("keys rewrap")
            let waiting = try SubjectKeys.versionCounts(in: store).filter { $0.key != ring.currentVersion }.values.reduce(0, +)
            progress.reporter.phase("rewrap", "subject keys", total: waiting)
            var total = 0
            while true {
                let n = try keys.rewrapBatch(in: store, batchSize: batchSize)
                if n == 0 { break }
                total += n
                progress.reporter.advance("rewrap", "subject keys", done: total, total: max(waiting, total))
            }
            progress.finish("\(total) subject keys re-wrapped")
            // SQLite: leave no old wrapped key in the WAL either.
            if let sqlite = store as? Store { try await sqlite.checkpointAndTruncate() }
            let counts = try SubjectKeys.versionCounts(in: store)
            try await auditKeyEvent(
                common, action: SystemAction.keysRewrap.rawValue, reason: "re-wrapped \(total) subject keys under v\(ring.currentVersion)")
            print("re-wrapped \(total) subject keys; keys per master version: \(describe(counts))")
        }
    }

    struct Retire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete master key versions below a minimum, after checking nothing is still wrapped under them.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Lowest master version to keep.") var below: UInt32

        func run() async throws {
            let store = try Backend.open(common)
            let counts = try SubjectKeys.versionCounts(in: store)
            let stranded = counts.filter { $0.key < below }.values.reduce(0, +)
            guard stranded == 0 else {
                throw ValidationError("\(stranded) subject keys are still wrapped under versions below \(below); run `veil keys rewrap` first")
            }
            let retired = try KeyRing.retire(directory: try common.paths().keysDirectory, below: below)
            try await auditKeyEvent(common, action: SystemAction.keysRetire.rawValue, reason: "retired master versions below v\(below)")
            print(retired.isEmpty ? "nothing to retire" : "retired master versions \(retired.map(String.init).joined(separator: ", "))")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show master key versions and how many data keys each wraps.")
        @OptionGroup var common: CommonOptions

        func run() throws {
            let ring = try KeyRing.load(directory: try common.paths().keysDirectory, passphrase: common.passphrase)
            print("master versions: \(ring.versions.map { "v\($0)" }.joined(separator: ", ")) (current v\(ring.currentVersion))")
            let store = try Backend.open(common)
            print("subject keys per version: \(describe(try SubjectKeys.versionCounts(in: store)))")
        }
    }
}

/// Key-ring changes are audited like requests: actor `cli`, role `admin`. No key material goes into the entry.
func auditKeyEvent(_ common: CommonOptions, action: String, reason: String) async throws {
    let ring = try KeyRing.load(directory: try common.paths().keysDirectory, passphrase: common.passphrase)
    let log = try AuditLog(path: try common.paths().auditDatabase, signer: ring.auditSigner)
    try await log.append(AuditRecord(actor: "cli", role: Role.admin, action: action, resource: "key ring", outcome: .allowed, reason: reason))
    // A one-shot process signs its head before it exits, as the server does at shutdown.
    try await log.checkpoint()
}

func describe(_ counts: [UInt32: Int]) -> String {
    counts.isEmpty ? "none" : counts.sorted { $0.key < $1.key }.map { "v\($0.key)=\($0.value)" }.joined(separator: ", ")
}
