import Foundation
import Testing
@testable import Policy

/// The repository's own Policies/ directory.
let repositoryPolicies = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Policies").path

func shippedFiles() throws -> PolicyParser.Files { try PolicyParser.Files.read(directory: repositoryPolicies) }

struct BrokenPolicy: Sendable, CustomTestStringConvertible {
    let label: String
    let file: String
    let line: Int
    let reasonContains: String
    let edit: @Sendable (inout PolicyParser.Files) -> Void
    var testDescription: String { label }
}

let brokenPolicies: [BrokenPolicy] = [
    BrokenPolicy(label: "a notice not named YYYY-MM", file: "notices/v10.md", line: 0, reasonContains: "YYYY-MM") {
        $0.notices["v10"] = Array("# notice\n".utf8)
    },
    BrokenPolicy(label: "front matter never closed", file: "notices/2026-07.md", line: 1, reasonContains: "never closed") {
        $0.notices["2026-07"] = Array("---\nrequires_reconsent: true\n# notice\n".utf8)
    },
    BrokenPolicy(label: "namespace in two identity groups", file: "identities.yaml", line: 3, reasonContains: "namespace 'y' is in groups") {
        $0.identities = "shared_identities:\n  a: [x, y]\n  b: [y, z]\n"
    },
    BrokenPolicy(label: "identity group of one", file: "identities.yaml", line: 2, reasonContains: "at least two namespaces") {
        $0.identities = "shared_identities:\n  a: [x]\n"
    },
    BrokenPolicy(label: "unknown key in identities.yaml", file: "identities.yaml", line: 1, reasonContains: "unknown key 'shared'") {
        $0.identities = "shared: {}\n"
    },
    BrokenPolicy(label: "unknown category", file: "purposes.yaml", line: 20, reasonContains: "unknown category 'telepathy'") {
        $0.purposes = $0.purposes.replacingOccurrences(of: "categories: [browsing, search]", with: "categories: [browsing, telepathy]")
    },
    BrokenPolicy(label: "missing retention", file: "purposes.yaml", line: 4, reasonContains: "no retention_days") {
        $0.purposes = $0.purposes.replacingOccurrences(of: "    retention_days: 365\n", with: "")
    },
    BrokenPolicy(label: "unknown action", file: "roles.yaml", line: 3, reasonContains: "unknown action 'events:delete'") {
        $0.roles = $0.roles.replacingOccurrences(of: "app: [events:write,", with: "app: [events:delete,")
    },
    BrokenPolicy(
        label: "a browser role that may read", file: "roles.yaml", line: 12,
        reasonContains: "may only have events:write and consent:write, not consent:read"
    ) {
        $0.roles = $0.roles.replacingOccurrences(
            of: "browser: [events:write, consent:write]", with: "browser: [events:write, consent:write, consent:read]")
    },
    BrokenPolicy(label: "duplicate purpose", file: "purposes.yaml", line: 22, reasonContains: "duplicate purpose 'analytics'") {
        $0.purposes = $0.purposes.replacingOccurrences(of: "name: marketing", with: "name: analytics")
    },
    // libyaml notices the unclosed list where the next line starts.
    BrokenPolicy(label: "YAML syntax error", file: "roles.yaml", line: 5, reasonContains: "YAML syntax error") {
        $0.roles = $0.roles.replacingOccurrences(
            of: "recommendation-client: [recommendations:read]", with: "recommendation-client: [recommendations:read")
    },
    BrokenPolicy(label: "unknown field rule", file: "data-categories.yaml", line: 9, reasonContains: "unknown rule 'blur'") {
        $0.categories = $0.categories.replacingOccurrences(of: "item: keep\n      dwell_ms", with: "item: blur\n      dwell_ms")
    },
    BrokenPolicy(label: "unknown lawful basis", file: "purposes.yaml", line: 7, reasonContains: "unknown lawful basis 'vibes'") {
        $0.purposes = $0.purposes.replacingOccurrences(of: "lawful_basis: contract", with: "lawful_basis: vibes")
    },
]

@Suite struct PolicyParserTests {
    @Test func shippedPoliciesAreValid() throws {
        let policy = try PolicyParser.parse(try shippedFiles())
        #expect(Set(policy.purposes.keys) == ["essential", "personalization", "analytics", "marketing"])
        #expect(Set(policy.categories.keys) == ["browsing", "purchases", "search", "demographics", "feedback"])
        #expect(Set(policy.roles.keys) == ["app", "recommendation-client", "compliance-officer", "witness", "admin", "browser"])
        #expect(policy.notices["2026-01"] != nil)
        #expect(policy.purposes["personalization"]!.requiresConsent)
        #expect(!policy.purposes["essential"]!.requiresConsent)
        #expect(policy.allows(role: "admin", .keysRotate))
        #expect(!policy.allows(role: "recommendation-client", .auditRead))
        #expect(!policy.allows(role: "nobody", .eventsWrite))
        #expect(policy.version.count == 32)
    }

    @Test(arguments: brokenPolicies)
    func invalidPolicyFailsWithFileAndLine(_ broken: BrokenPolicy) throws {
        var files = try shippedFiles()
        broken.edit(&files)
        do {
            _ = try PolicyParser.parse(files)
            Issue.record("\(broken.label) was accepted")
        } catch let error as PolicyError {
            #expect(error.file == broken.file)
            #expect(error.line == broken.line, "\(error)")
            #expect(error.reason.contains(broken.reasonContains), "\(error)")
        }
    }

    /// Identity links stay within a namespace unless `identities.yaml` groups namespaces; the group is part of the
    /// policy's version.
    @Test func identityScopesAreNamespacesUnlessGrouped() throws {
        var files = try shippedFiles()
        let shipped = try PolicyParser.parse(files)
        #expect(shipped.identityScope(of: "a") != shipped.identityScope(of: "b"))
        files.identities = "shared_identities:\n  shop: [a, b]\n"
        let grouped = try PolicyParser.parse(files)
        #expect(grouped.identityScope(of: "a") == grouped.identityScope(of: "b"))
        #expect(grouped.identityScope(of: "c") != grouped.identityScope(of: "a"))
        #expect(grouped.version != shipped.version)
    }

    @Test func versionIgnoresCommentsButTracksRules() throws {
        let files = try shippedFiles()
        let base = try PolicyParser.parse(files).version
        var commented = files
        commented.roles = "# a new comment\n" + files.roles
        #expect(try PolicyParser.parse(commented).version == base)
        var changed = files
        changed.purposes = files.purposes.replacingOccurrences(of: "retention_days: 90", with: "retention_days: 91")
        #expect(try PolicyParser.parse(changed).version != base)
    }

    @Test func neverStoredFieldsAreDroppedWhateverACategorySays() throws {
        var files = try shippedFiles()
        files.categories = files.categories.replacingOccurrences(of: "      gender: keep", with: "      gender: keep\n      email: keep")
        let policy = try PolicyParser.parse(files)
        #expect(policy.rule(category: "demographics", field: "email") == .drop)
        #expect(policy.rule(category: "demographics", field: "age") == .ageBand)
        #expect(policy.rule(category: "demographics", field: "shoe_size") == .drop)
    }

    @Test func missingFileIsNamed() throws {
        let dir = NSTemporaryDirectory() + "veil-policy-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        #expect(throws: PolicyError(file: "purposes.yaml", line: 0, reason: "missing or unreadable in \(dir)")) {
            try PolicyParser.load(directory: dir)
        }
    }
}
