import Foundation
import Pseudonymization
import Vault

/// The cleaning rules, each a pure function.
public enum Clean {
    /// Strips HTML tags and control characters, collapses whitespace, trims.
    public static func text(_ s: String) -> String {
        // Fast path: printable ASCII without tags or runs of spaces is already clean.
        var clean = true
        var previousSpace = true
        for c in s.utf8 {
            if c < 0x20 || c >= 0x7f || c == UInt8(ascii: "<") || (c == 0x20 && previousSpace) { clean = false; break }
            previousSpace = c == 0x20
        }
        if clean && !previousSpace { return s }
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

    /// Epoch seconds (UTC) from a JSON value: ISO 8601 text (with or without fractional seconds, any offset) or
    /// a number of epoch milliseconds.
    public static func timestamp(_ value: JSONValue?) -> Int64? {
        switch value {
        case .number(let ms)?:
            guard ms.isFinite, ms > 0, ms < 1e14 else { return nil }
            return Int64(ms / 1000)
        case .string(let s)?:
            return parseISO8601(s)
        default:
            return nil
        }
    }

    /// Epoch seconds (UTC) from ISO 8601 text.
    public static func timestamp(_ s: String) -> Int64? { parseISO8601(s) }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM)` to epoch seconds (UTC).
    /// Written by hand: Foundation's ISO8601DateFormatter costs tens of microseconds per call on Linux.
    public static func parseISO8601(_ s: String) -> Int64? {
        let b = Array(s.utf8)
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in 0..<n {
                let c = b[i + k]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            i += n
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(45), let month = digits(2), expect(45), let day = digits(2),
            i < b.count, b[i] == 84 || b[i] == 116 || b[i] == 32
        else { return nil }
        i += 1
        guard let hour = digits(2), expect(58), let minute = digits(2), expect(58), let second = digits(2) else { return nil }
        guard (1...12).contains(month), (1...daysIn(month, year)).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        if i < b.count, b[i] == 46 || b[i] == 44 {
            i += 1
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
            guard i > start else { return nil }
        }
        var offset = 0
        guard i < b.count else { return nil }
        if b[i] == 90 || b[i] == 122 {
            i += 1
        } else if b[i] == 43 || b[i] == 45 {
            let sign = b[i] == 45 ? -1 : 1
            i += 1
            guard let oh = digits(2) else { return nil }
            _ = expect(58)
            guard let om = digits(2), oh < 24, om < 60 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = daysFromCivil(year, month, day)
        return Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second - offset)
    }

    static func daysIn(_ month: Int, _ year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// A source channel name (`web`, `ios-app`, `pos 12`): letters, digits, space, `.`, `_`, `-`, at most 64 bytes,
    /// starting with a letter or digit; nil otherwise. Sources appear in clear in quality counters, logs and
    /// public metrics labels, so anything that could carry an e-mail address or a URL is refused.
    public static func channel(_ s: String) -> String? {
        let bytes = Array(s.utf8)
        guard let first = bytes.first, bytes.count <= 64, isAlphanumeric(first),
            bytes.allSatisfy({ isAlphanumeric($0) || $0 == 0x20 || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") })
        else { return nil }
        return s
    }

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x41...0x5a).contains(b) || (0x61...0x7a).contains(b)
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

    /// A stable, unambiguous byte rendering of fields (keys sorted, strings length-prefixed, numbers by their
    /// bits), for content hashing; numbers by their bits because rendering them as text was costly in ingestion.
    static func canonical(_ fields: [String: FieldValue], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        for key in fields.keys.sorted() {
            out.appendLengthPrefixed(key)
            render(fields[key]!, &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    private static func render(_ v: FieldValue, _ out: inout [UInt8]) {
        switch v {
        case .string(let s):
            out.append(UInt8(ascii: "s"))
            out.appendLengthPrefixed(s)
        case .number(let n):
            out.append(UInt8(ascii: "n"))
            var bits = (n == 0 ? 0 : n).bitPattern.littleEndian  // -0 and 0 are one value
            withUnsafeBytes(of: &bits) { out.append(contentsOf: $0) }
        case .bool(let b):
            out.append(b ? UInt8(ascii: "t") : UInt8(ascii: "f"))
        case .list(let l):
            out.append(UInt8(ascii: "["))
            for element in l { render(element, &out) }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            canonical(o, into: &out)
        }
    }
}
