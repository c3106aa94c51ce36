import Foundation
import Vault
import Yams

/// Reads and validates a policy directory: `purposes.yaml`, `data-categories.yaml`, `roles.yaml`, `notices/*.md`.
public enum PolicyParser {
    /// The policy files' text, read by the caller, so that parsing stays free of I/O.
    public struct Files: Sendable {
        public var purposes: String
        public var categories: String
        public var roles: String
        /// Notice version (file name without `.md`) → raw bytes.
        public var notices: [String: [UInt8]]
        /// `identities.yaml`, optional: namespaces that share identities.
        public var identities: String?

        public init(purposes: String, categories: String, roles: String, notices: [String: [UInt8]], identities: String? = nil) {
            self.purposes = purposes
            self.categories = categories
            self.roles = roles
            self.notices = notices
            self.identities = identities
        }

        /// Reads the files of `directory`. A missing file is a ``PolicyError`` naming it.
        public static func read(directory: String) throws -> Files {
            func text(_ name: String) throws -> String {
                let path = (directory as NSString).appendingPathComponent(name)
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw PolicyError(file: name, line: 0, reason: "missing or unreadable in \(directory)")
                }
                return String(decoding: data, as: UTF8.self)
            }
            let noticeDirectory = (directory as NSString).appendingPathComponent("notices")
            var notices: [String: [UInt8]] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: noticeDirectory)) ?? [] where name.hasSuffix(".md") {
                if let data = FileManager.default.contents(atPath: (noticeDirectory as NSString).appendingPathComponent(name)) {
                    notices[String(name.dropLast(3))] = Array(data)
                }
            }
            let identities = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent("identities.yaml"))
                .map { String(decoding: $0, as: UTF8.self) }
            return Files(
                purposes: try text("purposes.yaml"), categories: try text("data-categories.yaml"), roles: try text("roles.yaml"), notices: notices,
                identities: identities)
        }
    }

    public static func load(directory: String) throws -> PolicySet {
        try parse(Files.read(directory: directory))
    }

    public static func parse(_ files: Files) throws -> PolicySet {
        let categoriesRoot = try compose(files.categories, file: "data-categories.yaml")
        let (categories, neverStored) = try parseCategories(categoriesRoot)
        let purposes = try parsePurposes(try compose(files.purposes, file: "purposes.yaml"), categories: categories)
        let roles = try parseRoles(try compose(files.roles, file: "roles.yaml"))
        guard !files.notices.isEmpty else {
            throw PolicyError(file: "notices/", line: 0, reason: "no notice texts (notices/VERSION.md) found")
        }
        var notices: [String: Notice] = [:]
        for (version, bytes) in files.notices {
            // Versions compare as text (the newest notice, re-consent): only YYYY-MM keeps that order right.
            let v = Array(version.utf8)
            guard v.count == 7, v[4] == UInt8(ascii: "-"), v.enumerated().allSatisfy({ $0.offset == 4 || ($0.element >= 48 && $0.element <= 57) })
            else {
                throw PolicyError(
                    file: "notices/\(version).md", line: 0, reason: "a notice's file name is its version, YYYY-MM (for example 2026-06.md)")
            }
            notices[version] = Notice(
                version: version, hash: Hash.blake2b(bytes).hexString,
                requiresReconsent: try noticeRequiresReconsent(bytes, file: "notices/\(version).md"))
        }
        let groups = try files.identities.map { try parseIdentityGroups(try compose($0, file: "identities.yaml")) } ?? [:]
        var version = canonicalHash(purposes: purposes, categories: categories, neverStored: neverStored, roles: roles, notices: notices)
        if !groups.isEmpty {
            let text = groups.sorted { $0.key < $1.key }.map { "identity|\($0.key)|\($0.value)" }.joined(separator: "\n")
            version = Hash.blake2b(Array((version + "\n" + text).utf8), length: 16).hexString
        }
        return PolicySet(
            purposes: purposes, categories: categories, neverStored: neverStored, roles: roles, notices: notices,
            identityGroups: groups, version: version)
    }

    // MARK: - Files

    static func compose(_ text: String, file: String) throws -> Node {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw PolicyError(file: file, line: 1, reason: "file is empty")
            }
            return node
        } catch let error as YamlError {
            throw PolicyError(file: file, line: line(of: error), reason: "YAML syntax error: \(problem(of: error))")
        }
    }

    static func line(of error: YamlError) -> Int {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        case .duplicatedKeysInMapping(_, let context): return context.mark.line
        default: return 0
        }
    }

    static func problem(of error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): return problem
        case .duplicatedKeysInMapping(let duplicates, _): return "duplicated keys \(duplicates.joined(separator: ", "))"
        default: return String(describing: error)
        }
    }

    static func parseCategories(_ root: Node) throws -> ([String: DataCategory], Set<String>) {
        let file = "data-categories.yaml"
        let top = try mapping(root, file: file, what: "the top level")
        let never = try top["never_stored"].map { try stringList($0, file: file, what: "never_stored") } ?? []
        guard let categoriesNode = top["categories"] else {
            throw PolicyError(file: file, line: root.line, reason: "missing 'categories'")
        }
        var categories: [String: DataCategory] = [:]
        for (key, value) in try pairs(categoriesNode, file: file, what: "categories") {
            let name = try scalar(key, file: file, what: "a category name")
            guard categories[name] == nil else {
                throw PolicyError(file: file, line: key.line, reason: "duplicate category '\(name)'")
            }
            let body = try mapping(value, file: file, what: "category '\(name)'")
            guard let fieldsNode = body["fields"] else {
                throw PolicyError(file: file, line: value.line, reason: "category '\(name)' has no 'fields'")
            }
            var fields: [String: FieldRule] = [:]
            for (fieldKey, ruleNode) in try pairs(fieldsNode, file: file, what: "fields of '\(name)'") {
                let field = try scalar(fieldKey, file: file, what: "a field name")
                let ruleName = try scalar(ruleNode, file: file, what: "the rule of '\(field)'")
                guard let rule = FieldRule(rawValue: ruleName) else {
                    throw PolicyError(
                        file: file, line: ruleNode.line,
                        reason:
                            "unknown rule '\(ruleName)' for field '\(field)'; use one of \(FieldRule.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                fields[field] = rule
            }
            let description = try body["description"].map { try scalar($0, file: file, what: "description") } ?? ""
            categories[name] = DataCategory(name: name, description: description, fields: fields)
        }
        return (categories, Set(never))
    }

    static func parsePurposes(_ root: Node, categories: [String: DataCategory]) throws -> [String: Purpose] {
        let file = "purposes.yaml"
        let top = try mapping(root, file: file, what: "the top level")
        guard let list = top["purposes"], let entries = list.sequence else {
            throw PolicyError(file: file, line: root.line, reason: "'purposes' must be a list")
        }
        var purposes: [String: Purpose] = [:]
        for entry in entries {
            let body = try mapping(entry, file: file, what: "a purpose")
            func required(_ key: String) throws -> Node {
                guard let node = body[key] else {
                    throw PolicyError(file: file, line: entry.line, reason: "purpose is missing '\(key)'")
                }
                return node
            }
            let nameNode = try required("name")
            let name = try scalar(nameNode, file: file, what: "name")
            guard purposes[name] == nil else {
                throw PolicyError(file: file, line: nameNode.line, reason: "duplicate purpose '\(name)'")
            }
            let basisNode = try required("lawful_basis")
            let basisName = try scalar(basisNode, file: file, what: "lawful_basis")
            guard let basis = LawfulBasis(rawValue: basisName) else {
                throw PolicyError(
                    file: file, line: basisNode.line,
                    reason: "unknown lawful basis '\(basisName)'; use \(LawfulBasis.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let categoriesNode = try required("categories")
            let used = try stringList(categoriesNode, file: file, what: "categories")
            for category in used where categories[category] == nil {
                throw PolicyError(file: file, line: categoriesNode.line, reason: "purpose '\(name)' names unknown category '\(category)'")
            }
            guard let retentionNode = body["retention_days"] else {
                throw PolicyError(file: file, line: entry.line, reason: "purpose '\(name)' has no retention_days")
            }
            guard let retention = Int(try scalar(retentionNode, file: file, what: "retention_days")), retention > 0 else {
                throw PolicyError(file: file, line: retentionNode.line, reason: "retention_days of '\(name)' must be a positive whole number of days")
            }
            let version =
                try body["version"].map { node -> Int in
                    guard let v = Int(try scalar(node, file: file, what: "version")), v > 0 else {
                        throw PolicyError(file: file, line: node.line, reason: "version must be a positive integer")
                    }
                    return v
                } ?? 1
            let description = try scalar(try required("description"), file: file, what: "description")
            purposes[name] = Purpose(
                name: name, version: version, description: description, lawfulBasis: basis, categories: used, retentionDays: retention)
        }
        return purposes
    }

    static func parseRoles(_ root: Node) throws -> [String: Role] {
        let file = "roles.yaml"
        let top = try mapping(root, file: file, what: "the top level")
        guard let rolesNode = top["roles"] else { throw PolicyError(file: file, line: root.line, reason: "missing 'roles'") }
        var roles: [String: Role] = [:]
        for (key, value) in try pairs(rolesNode, file: file, what: "roles") {
            let name = try scalar(key, file: file, what: "a role name")
            guard roles[name] == nil else { throw PolicyError(file: file, line: key.line, reason: "duplicate role '\(name)'") }
            guard let items = value.sequence else {
                throw PolicyError(file: file, line: value.line, reason: "role '\(name)' must list its actions")
            }
            var actions = Set<Action>()
            for item in items {
                let actionName = try scalar(item, file: file, what: "an action")
                guard let action = Action(rawValue: actionName) else {
                    throw PolicyError(file: file, line: item.line, reason: "unknown action '\(actionName)' for role '\(name)'")
                }
                actions.insert(action)
            }
            // Its key sits in web pages for anyone to copy: it may only send, never read or administer.
            if name == Role.browser, let extra = actions.subtracting(Role.browserActions).map(\.rawValue).sorted().first {
                throw PolicyError(
                    file: file, line: value.line,
                    reason: "role 'browser' is publishable (its key is in web pages) and may only have events:write and consent:write, not \(extra)")
            }
            roles[name] = Role(name: name, actions: actions)
        }
        return roles
    }

    /// A notice may open with YAML front matter between `---` lines; its one key is `requires_reconsent` (bool).
    static func noticeRequiresReconsent(_ bytes: [UInt8], file: String) throws -> Bool {
        // A byte order mark or Windows line ends must not hide the front matter (the rule would fail open).
        var text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
        if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
        guard text.hasPrefix("---\n") else { return false }
        guard let end = text.range(of: "\n---\n", range: text.index(text.startIndex, offsetBy: 3)..<text.endIndex) else {
            throw PolicyError(file: file, line: 1, reason: "the front matter opened with --- is never closed by a line of ---")
        }
        let front = String(text[text.index(text.startIndex, offsetBy: 4)..<end.lowerBound])
        let top = try mapping(try compose(front, file: file), file: file, what: "the front matter")
        var requires = false
        for (key, value) in top {
            guard key == "requires_reconsent" else {
                throw PolicyError(
                    file: file, line: value.line + 1, reason: "unknown key '\(key)' in the front matter; the only key is 'requires_reconsent'")
            }
            guard let flag = value.bool else {
                throw PolicyError(file: file, line: value.line + 1, reason: "requires_reconsent must be true or false")
            }
            requires = flag
        }
        return requires
    }

    /// `shared_identities: {group: [namespace, ...]}` → namespace → group. A namespace may be in one group only.
    static func parseIdentityGroups(_ root: Node) throws -> [String: String] {
        let file = "identities.yaml"
        let top = try mapping(root, file: file, what: "the top level")
        for key in top.keys where key != "shared_identities" {
            throw PolicyError(file: file, line: top[key]!.line, reason: "unknown key '\(key)'; the only key is 'shared_identities'")
        }
        guard let groupsNode = top["shared_identities"] else { return [:] }
        if groupsNode.scalar != nil, groupsNode.scalar?.string == "" { return [:] }
        var groups: [String: String] = [:]
        for (key, value) in try pairs(groupsNode, file: file, what: "shared_identities") {
            let group = try scalar(key, file: file, what: "a group name")
            let members = try stringList(value, file: file, what: "group '\(group)'")
            guard members.count >= 2 else {
                throw PolicyError(file: file, line: value.line, reason: "group '\(group)' must list at least two namespaces")
            }
            for namespace in members {
                if let other = groups[namespace] {
                    throw PolicyError(
                        file: file, line: value.line, reason: "namespace '\(namespace)' is in groups '\(other)' and '\(group)'; it may be in one")
                }
                groups[namespace] = group
            }
        }
        return groups
    }

    // MARK: - Node helpers

    static func mapping(_ node: Node, file: String, what: String) throws -> [String: Node] {
        var result: [String: Node] = [:]
        for (key, value) in try pairs(node, file: file, what: what) {
            result[try scalar(key, file: file, what: "a key")] = value
        }
        return result
    }

    static func pairs(_ node: Node, file: String, what: String) throws -> [(Node, Node)] {
        guard let mapping = node.mapping else {
            throw PolicyError(file: file, line: node.line, reason: "\(what) must be a mapping")
        }
        return mapping.map { ($0.key, $0.value) }
    }

    static func scalar(_ node: Node, file: String, what: String) throws -> String {
        guard let s = node.scalar?.string else {
            throw PolicyError(file: file, line: node.line, reason: "\(what) must be a single value")
        }
        return s
    }

    static func stringList(_ node: Node, file: String, what: String) throws -> [String] {
        guard let items = node.sequence else {
            throw PolicyError(file: file, line: node.line, reason: "\(what) must be a list")
        }
        return try items.map { try scalar($0, file: file, what: "an entry of \(what)") }
    }

    // MARK: - Version

    static func canonicalHash(
        purposes: [String: Purpose], categories: [String: DataCategory], neverStored: Set<String>, roles: [String: Role], notices: [String: Notice]
    ) -> String {
        var lines: [String] = []
        for p in purposes.values.sorted(by: { $0.name < $1.name }) {
            lines.append(
                "purpose|\(p.name)|\(p.version)|\(p.lawfulBasis.rawValue)|\(p.categories.sorted().joined(separator: ","))|\(p.retentionDays)|\(p.description)"
            )
        }
        for c in categories.values.sorted(by: { $0.name < $1.name }) {
            lines.append("category|\(c.name)|" + c.fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.rawValue)" }.joined(separator: ","))
        }
        lines.append("never|" + neverStored.sorted().joined(separator: ","))
        for r in roles.values.sorted(by: { $0.name < $1.name }) {
            lines.append("role|\(r.name)|" + r.actions.map(\.rawValue).sorted().joined(separator: ","))
        }
        for n in notices.values.sorted(by: { $0.version < $1.version }) { lines.append("notice|\(n.version)|\(n.hash)") }
        // The notice's bytes (front matter included) are in its hash, so a change to requires_reconsent changes it.
        return Hash.blake2b(Array(lines.joined(separator: "\n").utf8), length: 16).hexString
    }
}

extension Node {
    var line: Int { mark?.line ?? 0 }
}
