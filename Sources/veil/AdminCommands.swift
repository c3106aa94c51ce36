import ArgumentParser
import Audit
import Consent
import Foundation
import Serving
import VeilCore
import Gateway
import Policy
import Vault

struct PrincipalsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "principals", abstract: "Manage API-key principals.", subcommands: [Add.self, Revoke.self, List.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a principal; its API key is printed once, on the last line.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Principal name.") var name: String
        @Option(help: "Role from Policies/roles.yaml.") var role: String
        @Option(help: "Token namespace (the app or tenant).") var namespace = "default"
        @Option(
            name: .customLong("origin"),
            help: "For role browser (a key put in web pages): an origin its pages are served from, as https://shop.example; repeat for each.")
        var origins: [String] = []

        func run() async throws {
            let service = try openService(common)
            let key = try service.principals.add(
                name: name, role: role, namespace: namespace, origins: origins, knownRoles: Set(service.policy.roles.keys))
            try await service.audit.append(
                AuditRecord(
                    actor: "cli", role: Role.admin, action: SystemAction.principalsAdd.rawValue, resource: "principal \(name)", outcome: .allowed,
                    reason: "role \(role)"))
            try await service.audit.checkpoint()
            if role == Role.browser {
                print("created browser key \(name) for \(origins.joined(separator: ", ")); it is public (put it in the page), may only send events")
                print("and consent choices, and is accepted only from those origins. Its identity secret (shown once; keep it on the shop's")
                print("server, never in a page) proves a signed-in person's id: proof = EXPIRES + \".\" + hex(HMAC-SHA256(key: secret,")
                print("message: EXPIRES + \"|\" + subject id)), EXPIRES in Unix seconds, at most 31 days ahead.")
                print("identity secret: \(service.principals.identitySecret(ofKey: key))")
                print("browser key (see `veil sdk` for the script tag):")
            } else {
                print("created principal \(name) with role \(role); its API key (shown once):")
            }
            print(key)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a principal's key.")
        @OptionGroup var common: CommonOptions
        @Argument var name: String

        func run() async throws {
            let service = try openService(common)
            try await service.principals.revoke(name: name)
            try await service.audit.append(
                AuditRecord(
                    actor: "cli", role: Role.admin, action: SystemAction.principalsRevoke.rawValue, resource: "principal \(name)", outcome: .allowed))
            try await service.audit.checkpoint()
            print("revoked \(name); a running server refuses its key within 1 s (revoke through DELETE /v1/principals/\(name) for at once)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List principals (never their keys).")
        @OptionGroup var common: CommonOptions

        func run() throws {
            for p in try openService(common).principals.list() {
                let origins = p.origins.isEmpty ? "" : "\t" + p.origins.joined(separator: " ")
                print("\(p.name)\t\(p.role)\t\(p.namespace)\t\(p.revoked ? "revoked" : "active")\(origins)")
            }
        }
    }
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train the serving model from the feature store (a running server retrains on its own schedule).")
    @OptionGroup var common: CommonOptions

    func run() throws {
        let progress = TerminalProgress("train")
        let model = try openService(common, trainingProgress: progress.reporter).training.train()
        progress.finish("trained on \(model.users) subjects and \(model.items.count) items")
        print(
            "trained \(model.version): \(model.users) subjects, \(model.items.count) items, weights \(model.blendWeights.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")), history recency scale \(model.hyperparameters.recency.map { "\($0)" } ?? "none")"
        )
    }
}

struct ConsentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "consent", abstract: "Consent ledger tools.", subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute the ledger's hash chain and every subject's current state from it; exit 1 naming the first bad event or state.")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let service = try openService(common)
            let result = try await service.consent.verifyLedger()
            if let bad = result.firstBadSequence {
                print("consent ledger FAILED verification at event \(bad): \(result.reason ?? "")")
                throw ExitCode(1)
            }
            if result.stateDifferenceCount > 0 {
                print("consent state FAILED verification: \(result.reason ?? "")")
                for line in result.stateDifferences { print("  \(line)") }
                throw ExitCode(1)
            }
            print("consent ledger intact: \(result.events) events; the current state of every subject matches them")
        }
    }
}

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "policy", abstract: "Policy tools.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate a policy directory and print its version.")
        @Argument(help: "Policy directory.") var directory = "./Policies"

        func run() throws {
            do {
                let policy = try PolicyParser.load(directory: directory)
                print(
                    "policy \(directory) is valid: version \(policy.version) (\(policy.purposes.count) purposes, \(policy.categories.count) categories, \(policy.roles.count) roles, \(policy.notices.count) notices)"
                )
            } catch let error as PolicyError {
                print("\(directory)/\(error)")
                throw ExitCode(1)
            }
        }
    }
}

/// `--outcome` takes the log's closed set of outcomes; any other value is refused with the list.
extension AuditOutcome: ExpressibleByArgument {}

struct SDKCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sdk",
        abstract: "The tracking script a shop puts on its pages: its paths, its integrity hash and the tag to paste.",
        discussion: """
            The script sends nothing before the shop's consent banner calls veil.consent({...}); make its key with
            `veil principals add NAME --role browser --origin https://your-shop.example`.
            """)

    @Option(help: "The gateway's public base URL, as the shop's pages reach it.") var endpoint = "https://veil.example"
    @Option(help: "The browser key to put in the tag.") var key = "vk_..."

    func run() throws {
        let integrity = "sha384-" + Data(Hash.sha384(TrackingScript.bytes)).base64EncodedString()
        print(
            "veil.js \(TrackingScript.version): \(TrackingScript.bytes.count) bytes, served at \(TrackingScript.versionedPath) (pinned) and \(TrackingScript.path)"
        )
        print("integrity: \(integrity)")
        print("")
        print("<script src=\"\(endpoint)\(TrackingScript.versionedPath)\" integrity=\"\(integrity)\" crossorigin=\"anonymous\"")
        print("        data-key=\"\(key)\" data-notice=\"2026-01\" data-jurisdiction=\"EU\"></script>")
        print("<script>")
        print("  // in your consent banner's callback, on every page:")
        print("  veil.consent({personalization: true, marketing: false});")
        print("</script>")
    }
}
