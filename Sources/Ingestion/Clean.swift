import Foundation
import Pseudonymization

/// The cleaning rules, each a pure function.
public enum Clean {
    /// Strips HTML tags and control characters, collapses whitespace, trims.
    public static func text(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        var inTag = false
        for scalar in s.unicodeScalars {
            if scalar == "<" { inTag = true; continue }
            if inTag { if scalar == ">" { inTag = false }; continue }
            if scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format {
                out.unicodeScalars.append(" ")
                continue
            }
            out.unicodeScalars.append(scalar)
        }
        return out.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    /// Search terms: cleaned text, Unicode NFKC, case-folded.
    public static func searchTerms(_ s: String) -> String {
        text(s).precomposedStringWithCompatibilityMapping.folding(options: [.caseInsensitive], locale: nil).lowercased()
    }

    private static let booleanType: Any.Type = type(of: (try! JSONSerialization.jsonObject(with: Data("[true]".utf8)) as! [Any])[0])

    /// Whether a JSONSerialization value was a JSON `true` or `false` (which also bridge to NSNumber).
    static func isJSONBoolean(_ value: Any) -> Bool { type(of: value) == booleanType }

    /// Epoch seconds (UTC) from ISO 8601 (with or without fractional seconds, any offset) or epoch milliseconds.
    public static func timestamp(_ value: Any?) -> Int64? {
        if let value, let n = value as? NSNumber, !isJSONBoolean(value) {
            let ms = n.doubleValue
            guard ms.isFinite, ms > 0, ms < 1e14 else { return nil }
            return Int64(ms / 1000)
        }
        guard let s = value as? String else { return nil }
        for options in [ISO8601DateFormatter.Options.withInternetDateTime, [.withInternetDateTime, .withFractionalSeconds]] {
            let f = ISO8601DateFormatter()
            f.formatOptions = options
            if let d = f.date(from: s) { return Int64(d.timeIntervalSince1970) }
        }
        return nil
    }

    /// An upper-case ISO 4217 code, or nil.
    public static func currency(_ s: String?) -> String? {
        guard let s else { return nil }
        let code = s.trimmingCharacters(in: .whitespaces).uppercased()
        guard code.count == 3, code.allSatisfy({ $0.isASCII && $0.isLetter }) else { return nil }
        return code
    }

    public static func truncate(_ s: String, _ n: Int) -> String {
        s.utf8.count <= n ? s : String(decoding: Array(s.utf8.prefix(n)), as: UTF8.self)
    }

    /// A stable text rendering of fields, for content hashing.
    static func canonical(_ fields: [String: FieldValue]) -> String {
        fields.keys.sorted().map { "\($0)=\(render(fields[$0]!))" }.joined(separator: ";")
    }

    private static func render(_ v: FieldValue) -> String {
        switch v {
        case .string(let s): return "s:\(s)"
        case .number(let n): return "n:\(n)"
        case .bool(let b): return "b:\(b)"
        case .list(let l): return "[" + l.map(render).joined(separator: ",") + "]"
        case .object(let o): return "{" + canonical(o) + "}"
        }
    }
}
