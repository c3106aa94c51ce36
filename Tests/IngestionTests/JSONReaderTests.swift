import Foundation
import TestSupport
import Testing
@testable import Ingestion

/// Converts what JSONSerialization read (or a value written with it) into a JSONValue, to compare the readers.
/// Booleans are left out: the documents compared hold none (they are checked on their own).
func fromFoundation(_ any: Any) -> JSONValue {
    switch any {
    case is NSNull: return .null
    case let s as String: return .string(s)
    case let a as [Any]: return .array(a.map(fromFoundation))
    case let o as [String: Any]: return .object(o.mapValues(fromFoundation))
    case let n as NSNumber: return .number(n.doubleValue)
    default: return .null
    }
}

@Suite struct JSONReaderTests {
    @Test func readsWhatFoundationReads() throws {
        let documents = [
            #"{"a": [1, -2.5, 1e3, 1E+2, -0, 0.125, 123456789012345678, 3.141592653589793], "b": {"c": null, "d": "x"}}"#,
            #"["plain", "esc\"aped\\", "\/slash", "\b\f\n\r\t", "\u00e9\u4e2d", "\ud83d\ude00", "😀 ünïcode", ""]"#,
            #"  [ [ ] , { } , [ [ 1 ] ] ]  "#,
            "{\"dup\": 1, \"dup\": 2}",
        ]
        for text in documents {
            let foundation = fromFoundation(try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]))
            #expect(try JSONReader.parse(Array(text.utf8)) == foundation, "\(text)")
        }
        #expect(try JSONReader.parse(Array("[true, false, null]".utf8)) == .array([.bool(true), .bool(false), .null]))
        #expect(try JSONReader.parse(Array("{\"dup\": 1, \"dup\": 2}".utf8)) == .object(["dup": .number(2)]))
    }

    @Test func everySampleShopBatchReadsLikeFoundation() throws {
        let shop = SampleShop(users: 40, items: 60, days: 10, seed: 7)
        for start in stride(from: 0, to: shop.events.count, by: 200) {
            let body = try JSONEncoder().encode(["events": Array(shop.events[start..<min(start + 200, shop.events.count)])])
            let foundation = fromFoundation(try JSONSerialization.jsonObject(with: body))
            #expect(try JSONReader.parse(Array(body)) == foundation)
        }
    }

    @Test func randomDocumentsRoundTrip() throws {
        var rng = TestRandom()
        let alphabet: [String] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{01}", "é", "中", "😀", "\u{7f}", "\u{2028}"]
        func random(_ depth: Int) -> Any {
            switch Int.random(in: 0..<(depth > 4 ? 4 : 6), using: &rng) {
            case 0: return (0..<Int.random(in: 0..<8, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }.joined()
            case 1: return Double(Int.random(in: -1_000_000...1_000_000, using: &rng)) / [1, 10, 1000, 7][Int.random(in: 0..<4, using: &rng)]
            case 2: return NSNull()
            case 3: return Int.random(in: -1_000_000_000_000...1_000_000_000_000, using: &rng)
            case 4: return (0..<Int.random(in: 0..<5, using: &rng)).map { _ in random(depth + 1) }
            default:
                var o: [String: Any] = [:]
                for _ in 0..<Int.random(in: 0..<5, using: &rng) { o["k" + alphabet.randomElement(using: &rng)!] = random(depth + 1) }
                return o
            }
        }
        for _ in 0..<300 {
            let value = [random(0)]
            let data = try JSONSerialization.data(withJSONObject: value)
            // Compared with the value written, not with JSONSerialization's reading of it: that reads long decimals
            // as NSDecimalNumber, whose doubleValue can be one ulp off.
            #expect(try JSONReader.parse(Array(data)) == fromFoundation(value), "seed \(rng.seed): \(String(decoding: data, as: UTF8.self))")
        }
    }

    @Test func refusesWhatRFC8259Refuses() {
        let bad: [[UInt8]] =
            [
                "{\"a\":1,}", "[1,]", "01", "1.", ".5", "-", "+1", "1e", "[1 2]", "{\"a\" 1}", "{a:1}", "{} {}", "", " ",
                "tru", "nul", "True", "\"unterminated", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00x\"", "\"\\ud800\\u0041\"",
                "'single'", "[NaN]", "[Infinity]",
            ].map { Array($0.utf8) } + [
                [0x22, 0x01, 0x22],  // a raw control character in a string
                [0x22, 0xFF, 0x22],  // invalid UTF-8
                [0x22, 0xC3, 0x22],  // truncated UTF-8 sequence
                [0x22, 0xED, 0xA0, 0x80, 0x22],  // an encoded surrogate
            ]
        for bytes in bad {
            #expect(throws: JSONReader.Failure.self, "\(String(decoding: bytes, as: UTF8.self))") { try JSONReader.parse(bytes) }
        }
    }

    @Test func nestingIsBounded() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try JSONReader.parse(Array(ok.utf8)) }
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONReader.Failure.self) { try JSONReader.parse(Array(deep.utf8)) }
        let deepObject = String(repeating: "{\"a\":", count: 65) + "1" + String(repeating: "}", count: 65)
        #expect(throws: JSONReader.Failure.self) { try JSONReader.parse(Array(deepObject.utf8)) }
    }

    @Test func failuresNameThePlaceNotTheContent() {
        do {
            _ = try JSONReader.parse(Array("{\"email\": \"alice@example.com\",}".utf8))
            Issue.record("accepted a trailing comma")
        } catch {
            #expect(error.reason.contains("at byte"))
            #expect(!error.reason.contains("alice"))
        }
    }
}
