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
        if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let l = try? c.decode([FieldValue].self) {
            self = .list(l)
        } else {
            self = .object(try c.decode([String: FieldValue].self))
        }
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
        let d = lowerASCII(device)
        func has(_ needle: String) -> Bool { contains(d, needle) }
        if has("ipad") || has("tablet") { return "tablet" }
        if has("mobile") || has("iphone") || has("android") || d == Array("phone".utf8) { return "mobile" }
        if has("desktop") || has("windows") || has("macintosh") || has("linux") || d == Array("web".utf8) { return "desktop" }
        return "other"
    }

    public static func referrerClass(_ referrer: String) -> String {
        let r = lowerASCII(referrer)
        if r.isEmpty || r == Array("direct".utf8) { return "direct" }
        for s in ["google.", "bing.", "duckduckgo.", "search"] where contains(r, s) { return "search" }
        for s in ["facebook.", "instagram.", "t.co", "twitter.", "tiktok.", "social"] where contains(r, s) { return "social" }
        if contains(r, "mail") || contains(r, "newsletter") { return "email" }
        return "other"
    }

    /// Byte-level helpers: Foundation's `contains` goes through NSString on Linux and dominated the minimizer.
    static func lowerASCII(_ s: String) -> [UInt8] {
        s.utf8.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }
    }

    static func contains(_ haystack: [UInt8], _ needle: String) -> Bool {
        let n = Array(needle.utf8)
        guard !n.isEmpty, haystack.count >= n.count else { return n.isEmpty }
        outer: for start in 0...(haystack.count - n.count) {
            for k in 0..<n.count where haystack[start + k] != n[k] { continue outer }
            return true
        }
        return false
    }
}
