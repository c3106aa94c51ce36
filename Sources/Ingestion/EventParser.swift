import Foundation
import Policy
import Pseudonymization
import Vault

/// Validates and cleans a batch of events (`{"events": [...]}`), event by event, so that valid events of a mixed
/// batch are kept and each invalid one is named by index with its reason.
public struct EventParser: Sendable {
    public struct Limits: Sendable {
        public var maxEvents = 1000
        public var maxBytes = 1 << 20
        /// How far in the future a timestamp may lie (clock skew).
        public var maxFutureSkew: TimeInterval = 300
        public var maxStringLength = 2048
        /// Caps applied to outliers (values above are capped and flagged).
        public var maxDwellMs: Double = 30 * 60 * 1000
        public var maxQuantity: Double = 100
        public var maxUnitPrice: Double = 100_000
        public init() {}
    }

    public let limits: Limits
    public init(limits: Limits = .init()) { self.limits = limits }

    /// A batch-level failure (the whole body is unusable).
    public struct BatchError: Error, CustomStringConvertible, Sendable {
        public let reason: String
        /// The body is over the size limit (the rest are malformed batches).
        public var tooLarge = false
        public var description: String { reason }
    }

    /// Parses a request body.
    /// - Returns: the clean events with their indices, and the rejections.
    /// - Throws: ``BatchError`` for malformed JSON, a missing `events` list, or a batch over the limits.
    public func parse(body: [UInt8], now: Date) throws -> (events: [(index: Int, event: CleanEvent)], rejected: [Rejection]) {
        guard body.count <= limits.maxBytes else { throw BatchError(reason: "batch is larger than \(limits.maxBytes) bytes", tooLarge: true) }
        let json: JSONValue
        do {
            json = try JSONReader.parse(body)
        } catch {
            throw BatchError(reason: "body is not valid JSON: \(error.reason)")
        }
        guard let list = json.objectValue?["events"]?.arrayValue else {
            throw BatchError(reason: "body must be an object with an 'events' list")
        }
        guard list.count <= limits.maxEvents else { throw BatchError(reason: "batch has \(list.count) events; the limit is \(limits.maxEvents)") }
        var events: [(Int, CleanEvent)] = []
        var rejected: [Rejection] = []
        for (index, raw) in list.enumerated() {
            do {
                guard let dict = raw.objectValue else { throw BatchError(reason: "event must be an object") }
                events.append((index, try parseEvent(dict, now: now)))
            } catch let error as BatchError {
                // A source that is no channel name is counted as "invalid", never stored or shown as sent.
                let source = raw.objectValue?["source"]?.stringValue.map { Clean.channel($0) ?? "invalid" }
                rejected.append(Rejection(index: index, reason: error.reason, source: source))
            }
        }
        return (events, rejected)
    }

    /// Validates and cleans one event object.
    public func parseEvent(_ raw: [String: JSONValue], now: Date) throws -> CleanEvent {
        var raw = raw
        let id = try requiredString(raw, "id")
        let kindName = try requiredString(raw, "kind")
        guard let kind = EventKind(rawValue: kindName) else {
            throw BatchError(
                reason:
                    "unknown kind '\(Clean.truncate(kindName, 40))'; expected one of \(EventKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let version = try optionalNumber(raw, "schema_version").map(Int.init) ?? kind.currentSchemaVersion
        guard (1...kind.currentSchemaVersion).contains(version) else {
            throw BatchError(reason: "unknown schema_version \(version) for \(kind.rawValue); supported: 1...\(kind.currentSchemaVersion)")
        }
        if kind == .pageView && version == 1 {
            // v1 sent dwell time in seconds as `dwell`; v2 sends milliseconds as `dwell_ms`.
            if let seconds = raw["dwell"]?.numberValue { raw["dwell_ms"] = .number(seconds * 1000) }
            raw["dwell"] = nil
        }
        // The subject id is kept byte for byte (never cleaned): erase and export must find it under the same token.
        guard let subject = raw["subject"]?.stringValue else {
            throw BatchError(reason: raw["subject"] == nil ? "missing field 'subject'" : "field 'subject' must be a string")
        }
        if let problem = SubjectID.problem(subject) { throw BatchError(reason: "subject \(problem)") }
        guard let source = Clean.channel(try requiredString(raw, "source")) else {
            throw BatchError(reason: "source must be a channel name: letters, digits, space, '.', '_' or '-', at most 64 bytes")
        }
        guard let timestamp = Clean.timestamp(raw["timestamp"]) else {
            throw BatchError(reason: "timestamp must be ISO 8601 (with offset) or epoch milliseconds")
        }
        guard Double(timestamp) <= now.timeIntervalSince1970 + limits.maxFutureSkew else {
            throw BatchError(reason: "timestamp lies in the future")
        }
        var p = KindFields(fields: ["timestamp": .number(Double(timestamp))])
        switch kind {
        case .pageView: try readPageView(raw, now: now, into: &p)
        case .purchase: try readPurchase(raw, now: now, into: &p)
        case .search: try readSearch(raw, now: now, into: &p)
        case .profile: try readProfile(raw, now: now, into: &p)
        case .feedback: try readFeedback(raw, now: now, into: &p)
        }
        let (fields, signals, capped) = (p.fields, p.signals, p.capped)
        var content: [UInt8] = []
        content.reserveCapacity(256)
        content.append(contentsOf: "\(kind.rawValue)|\(subject)|\(timestamp / 10)|".utf8)
        Clean.canonical(fields, into: &content)
        let contentKey = Hash.blake2b(content, length: 16).hexString
        let expected = kind.expectedFields
        let present = expected.filter { names in names.contains { fields[$0] != nil } }.count
        return CleanEvent(
            id: id, kind: kind, subject: subject, timestamp: timestamp, source: source, fields: fields,
            signals: signals, cappedFields: capped, completeness: Double(present) / Double(max(expected.count, 1)),
            contentKey: contentKey)
    }

    /// A page view: the item, dwell time, scroll depth, referrer and device.
    private func readPageView(_ raw: [String: JSONValue], now: Date, into p: inout KindFields) throws {
        let item = try requiredString(raw, "item")
        p.fields["item"] = .string(item)
        if let dwell = try optionalNumber(raw, "dwell_ms") {
            guard dwell >= 0 else { throw BatchError(reason: "dwell_ms must not be negative") }
            p.fields["dwell_ms"] = .number(p.cap("dwell_ms", dwell, max: limits.maxDwellMs))
        }
        if let depth = try optionalNumber(raw, "scroll_depth") {
            guard (0...1).contains(depth) else { throw BatchError(reason: "scroll_depth must be between 0 and 1") }
            p.fields["scroll_depth"] = .number(depth)
        }
        if let referrer = raw["referrer"]?.stringValue { p.fields["referrer"] = .string(Clean.truncate(referrer, limits.maxStringLength)) }
        if let device = raw["device"]?.stringValue { p.fields["device"] = .string(Clean.text(device)) }
        p.signals.append(ItemSignal(item: item, kind: .pageView, weight: 1))
    }

    /// A purchase: its order and lines (item, quantity, unit price, currency).
    private func readPurchase(_ raw: [String: JSONValue], now: Date, into p: inout KindFields) throws {
        p.fields["order"] = .string(try requiredString(raw, "order"))
        guard let lines = raw["lines"]?.arrayValue, !lines.isEmpty else { throw BatchError(reason: "purchase needs a non-empty 'lines' list") }
        var cleanLines: [FieldValue] = []
        for (n, entry) in lines.enumerated() {
            guard let line = entry.objectValue else { throw BatchError(reason: "lines[\(n)] must be an object") }
            let item = try requiredString(line, "item", path: "lines[\(n)].")
            guard let quantity = try optionalNumber(line, "quantity", path: "lines[\(n)]."), quantity > 0, quantity == quantity.rounded() else {
                throw BatchError(reason: "lines[\(n)].quantity must be a positive whole number")
            }
            guard let price = try optionalNumber(line, "unit_price", path: "lines[\(n)]."), price >= 0 else {
                throw BatchError(reason: "lines[\(n)].unit_price must be a non-negative number")
            }
            guard let currency = Clean.currency(line["currency"]?.stringValue) else {
                throw BatchError(reason: "lines[\(n)].currency must be a three-letter ISO 4217 code")
            }
            let q = p.cap("lines[\(n)].quantity", quantity, max: limits.maxQuantity)
            let unitPrice = p.cap("lines[\(n)].unit_price", price, max: limits.maxUnitPrice)
            cleanLines.append(
                .object(["item": .string(item), "quantity": .number(q), "unit_price": .number(unitPrice), "currency": .string(currency)]))
            p.signals.append(ItemSignal(item: item, kind: .purchase, weight: Float(3 + min(q, 5) - 1)))
        }
        p.fields["lines"] = .list(cleanLines)
    }

    /// A search: its cleaned query, filters, what was shown and what was clicked.
    private func readSearch(_ raw: [String: JSONValue], now: Date, into p: inout KindFields) throws {
        let query = Clean.searchTerms(try requiredString(raw, "query"))
        guard !query.isEmpty else { throw BatchError(reason: "query is empty after cleaning") }
        p.fields["query"] = .string(Clean.truncate(query, limits.maxStringLength))
        if let filters = raw["filters"]?.objectValue {
            p.fields["filters"] = .object(filters.compactMapValues { $0.stringValue.map { .string(Clean.text($0)) } })
        }
        let shown = raw["shown"]?.arrayValue?.compactMap(\.stringValue) ?? []
        p.fields["shown"] = .list(shown.map { .string($0) })
        var clicked: [FieldValue] = []
        for (n, entry) in (raw["clicked"]?.arrayValue ?? []).enumerated() {
            guard let click = entry.objectValue, let item = click["item"]?.stringValue, !item.isEmpty else {
                throw BatchError(reason: "clicked[\(n)] must be an object with an 'item'")
            }
            let position = click["position"]?.numberValue.map { FieldValue.number($0) } ?? .number(-1)
            clicked.append(.object(["item": .string(item), "position": position]))
            p.signals.append(ItemSignal(item: item, kind: .searchClick, weight: 1))
        }
        p.fields["clicked"] = .list(clicked)
    }

    /// A profile: age or birth year, gender, location and device (identifiers are marked for the minimizer).
    private func readProfile(_ raw: [String: JSONValue], now: Date, into p: inout KindFields) throws {
        if let age = try optionalNumber(raw, "age") {
            guard (0...120).contains(age) else { throw BatchError(reason: "age must be between 0 and 120") }
            p.fields["age"] = .number(age)
        }
        if let year = try optionalNumber(raw, "birth_year") {
            let current = Calendar(identifier: .gregorian).component(.year, from: now)
            guard (current - 120...current).contains(Int(year)) else { throw BatchError(reason: "birth_year is out of range") }
            p.fields["birth_year"] = .number(year)
        }
        for key in ["gender", "location", "device"] {
            if let value = raw[key]?.stringValue { p.fields[key] = .string(Clean.text(value)) }
        }
        // Identifiers an app might send along are kept here only so the minimizer can be seen dropping them.
        for key in ["email", "name", "ip", "phone"] where raw[key] != nil { p.fields[key] = .string("") }
    }

    /// Feedback about an item that was shown: one of ``InteractionKind/feedbackSignals``.
    private func readFeedback(_ raw: [String: JSONValue], now: Date, into p: inout KindFields) throws {
        let item = try requiredString(raw, "item")
        let signal = try requiredString(raw, "signal")
        p.fields["item"] = .string(item)
        p.fields["signal"] = .string(signal)
        guard let known = InteractionKind(rawValue: signal), InteractionKind.feedbackSignals.contains(known) else {
            throw BatchError(
                reason:
                    "unknown feedback signal '\(Clean.truncate(signal, 40))'; expected \(InteractionKind.feedbackSignals.map(\.rawValue).joined(separator: ", "))"
            )
        }
        switch known {
        case .rating:
            guard let value = try optionalNumber(raw, "value"), (0...5).contains(value) else {
                throw BatchError(reason: "a rating needs a 'value' between 0 and 5")
            }
            p.fields["value"] = .number(value)
            p.signals.append(ItemSignal(item: item, kind: .rating, weight: Float(max(value - 2, 0.5))))
        case .click: p.signals.append(ItemSignal(item: item, kind: .click, weight: 1))
        case .addToCart: p.signals.append(ItemSignal(item: item, kind: .addToCart, weight: 2))
        case .dwell:
            guard let value = try optionalNumber(raw, "value"), value >= 0 else {
                throw BatchError(reason: "a dwell signal needs a non-negative 'value' in ms")
            }
            p.fields["value"] = .number(p.cap("value", value, max: limits.maxDwellMs))
            p.signals.append(ItemSignal(item: item, kind: .dwell, weight: 0.5))
        default: preconditionFailure("\(known) is not a feedback signal")  // the guard above admits only those
        }
    }

    private func requiredString(_ raw: [String: JSONValue], _ key: String, path: String = "") throws -> String {
        guard let value = raw[key] else { throw BatchError(reason: "missing field '\(path)\(key)'") }
        guard let string = value.stringValue else { throw BatchError(reason: "field '\(path)\(key)' must be a string") }
        let cleaned = Clean.text(string)
        guard !cleaned.isEmpty else { throw BatchError(reason: "field '\(path)\(key)' must not be empty") }
        guard cleaned.utf8.count <= limits.maxStringLength else {
            throw BatchError(reason: "field '\(path)\(key)' is longer than \(limits.maxStringLength) bytes")
        }
        return cleaned
    }

    private func optionalNumber(_ raw: [String: JSONValue], _ key: String, path: String = "") throws -> Double? {
        guard let value = raw[key], !value.isNull else { return nil }
        guard let d = value.numberValue else { throw BatchError(reason: "field '\(path)\(key)' must be a number") }
        guard d.isFinite, abs(d) < 1e15 else { throw BatchError(reason: "field '\(path)\(key)' is out of range") }
        return d
    }
}

/// What an event's kind adds: its cleaned fields, the item signals it gives, and the fields capped on the way.
struct KindFields {
    var fields: [String: FieldValue]
    var signals: [ItemSignal] = []
    var capped: [String] = []

    /// `value`, or `max` when above it (and the field named as capped).
    mutating func cap(_ name: String, _ value: Double, max: Double) -> Double {
        if value > max {
            capped.append(name)
            return max
        }
        return value
    }
}
