import Foundation
import Policy

/// A field value as it arrives in an event, before minimization.
public enum FieldValue: Sendable, Equatable, Codable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case list([FieldValue])
    case object([String: FieldValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let l = try? c.decode([FieldValue].self) { self = .list(l) }
        else { self = .object(try c.decode([String: FieldValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .number(let n): try c.encode(n)
        case .bool(let b): try c.encode(b)
        case .list(let l): try c.encode(l)
        case .object(let o): try c.encode(o)
        }
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var numberValue: Double? { if case .number(let n) = self { return n } else { return nil } }
}

/// Applies the policy's field rules before anything is stored: keeps what the category allows, generalizes
/// what it says to generalize, drops everything else (and always the `never_stored` fields).
public struct Minimizer: Sendable {
    public let policy: PolicySet
    /// The year age-from-birth-year is computed against (injected so tests and replays are stable).
    public let currentYear: Int

    public init(policy: PolicySet, currentYear: Int) {
        self.policy = policy
        self.currentYear = currentYear
    }

    /// The minimized record of `fields` for `category`.
    public func minimize(_ fields: [String: FieldValue], category: String) -> [String: FieldValue] {
        var out: [String: FieldValue] = [:]
        for (name, value) in fields {
            let rule = policy.rule(category: category, field: name)
            switch rule {
            case .drop: continue
            case .keep: out[name] = value
            case .ageBand:
                if let band = ageBand(field: name, value) { out["age_band"] = .string(band) }
            case .region:
                if let s = value.stringValue, let region = Generalize.region(s) { out[name] = .string(region) }
            case .deviceClass:
                if let s = value.stringValue { out[name] = .string(Generalize.deviceClass(s)) }
            case .referrerClass:
                if let s = value.stringValue { out[name] = .string(Generalize.referrerClass(s)) }
            case .day:
                if let n = value.numberValue { out[name] = .number((n / 86_400).rounded(.down) * 86_400) }
            }
        }
        return out
    }

    private func ageBand(field: String, _ value: FieldValue) -> String? {
        guard let n = value.numberValue else { return nil }
        let age = field == "birth_year" ? currentYear - Int(n) : Int(n)
        return Generalize.ageBand(age)
    }
}

/// The generalizations the policy can name. Each maps many precise values onto one coarse one.
public enum Generalize {
    /// Ten-year bands, with under-18 and 65+ collapsed.
    public static func ageBand(_ age: Int) -> String? {
        switch age {
        case ..<0, 121...: return nil
        case ..<18: return "under-18"
        case 18...24: return "18-24"
        case 65...: return "65+"
        default:
            let lo = (age - 25) / 10 * 10 + 25
            return "\(lo)-\(lo + 9)"
        }
    }

    /// Country or first-level region code: "DE-BY-Munich" → "DE-BY"; "Munich, DE" → "DE"; else nil.
    public static func region(_ location: String) -> String? {
        let trimmed = location.trimmingCharacters(in: .whitespaces)
        let parts = trimmed.split(separator: "-").map(String.init)
        if let first = parts.first, first.count == 2, first.allSatisfy(\.isLetter) {
            if parts.count >= 2, (1...3).contains(parts[1].count), parts[1].allSatisfy({ $0.isLetter || $0.isNumber }) {
                return "\(first.uppercased())-\(parts[1].uppercased())"
            }
            return first.uppercased()
        }
        if let last = trimmed.split(separator: ",").last?.trimmingCharacters(in: .whitespaces), last.count == 2, last.allSatisfy(\.isLetter) {
            return last.uppercased()
        }
        return nil
    }

    public static func deviceClass(_ device: String) -> String {
        let d = device.lowercased()
        if d.contains("ipad") || d.contains("tablet") { return "tablet" }
        if d.contains("mobile") || d.contains("iphone") || d.contains("android") || d == "phone" { return "mobile" }
        if d.contains("desktop") || d.contains("windows") || d.contains("macintosh") || d.contains("linux") || d == "web" { return "desktop" }
        return "other"
    }

    public static func referrerClass(_ referrer: String) -> String {
        let r = referrer.lowercased()
        if r.isEmpty || r == "direct" { return "direct" }
        for s in ["google.", "bing.", "duckduckgo.", "search"] where r.contains(s) { return "search" }
        for s in ["facebook.", "instagram.", "t.co", "twitter.", "tiktok.", "social"] where r.contains(s) { return "social" }
        if r.contains("mail") || r.contains("newsletter") { return "email" }
        return "other"
    }
}
