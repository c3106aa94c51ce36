import Foundation
import NIOCore
import Serving

public struct RecommendationResponse: Codable, Sendable, Equatable {
    public var subject: String
    public var personalized: Bool
    public var model_version: String
    public var request_id: String
    public var items: [RecommendedItem]
}

/// A recommendation response rendered once, without its request id and subject: what the cache keeps, so a
/// hit costs a splice instead of an encoding. The subject is spliced per request because linked ids (two apps'
/// ids of one person) share a token and so a cache entry, and one app must never see the other's id.
/// Hand-written JSON with sorted keys, like the encoder: Foundation's JSONEncoder took a fifth of the CPU of a
/// cached recommendation request on Linux.
struct RenderedRecommendation: Sendable {
    /// Everything before the request id's value.
    let head: [UInt8]
    /// Why the list is (not) personalized, for the audit entry of each request the cache answers.
    let auditReason: String
    /// The subject had personalization consent when the list was made (an experiment arm may still serve it an
    /// unpersonalized list): only then do experiments count its exposure.
    let consented: Bool

    init(_ r: RecommendationResponse, auditReason: String, consented: Bool) {
        self.auditReason = auditReason
        self.consented = consented
        var out: [UInt8] = []
        out.reserveCapacity(128 + r.items.count * 128)
        func raw(_ s: String) { out.append(contentsOf: s.utf8) }
        raw("{\"items\":[")
        for (n, item) in r.items.enumerated() {
            if n > 0 { raw(",") }
            raw("{\"explanation\":"); JSONText.string(item.explanation, into: &out)
            raw(",\"item\":"); JSONText.string(item.item, into: &out)
            raw(",\"reason\":"); JSONText.string(item.reason, into: &out)
            raw(",\"score\":"); raw(item.score.isFinite ? "\(item.score)" : "0")
            raw("}")
        }
        raw("],\"model_version\":"); JSONText.string(r.model_version, into: &out)
        raw(",\"personalized\":"); raw(r.personalized ? "true" : "false")
        raw(",\"request_id\":")
        head = out
    }

    /// The response body for one request, written once into the buffer the response goes out in.
    func body(requestID: String, subject: String) -> ByteBuffer {
        var tail: [UInt8] = []
        tail.reserveCapacity(requestID.utf8.count + subject.utf8.count * 2 + 24)
        JSONText.string(requestID, into: &tail)
        tail.append(contentsOf: ",\"subject\":".utf8)
        JSONText.string(subject, into: &tail)
        tail.append(UInt8(ascii: "}"))
        var buffer = ByteBufferAllocator().buffer(capacity: head.count + tail.count)
        buffer.writeBytes(head)
        buffer.writeBytes(tail)
        return buffer
    }
}

public enum JSONText {
    /// Appends `s` as a JSON string literal, escaping quotes, backslashes and control characters.
    public static func string(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0x0A: out.append(contentsOf: [92, 110])
            case 0x0D: out.append(contentsOf: [92, 114])
            case 0x09: out.append(contentsOf: [92, 116])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [92, 117, 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

public struct ConsentReceipt: Codable, Sendable {
    public var sequence: Int64
    public var hash: String
    public var previous_hash: String
    public var purpose: String
    public var granted: Bool
    public var notice_version: String
    public var notice_hash: String
    public var gpc_conflict: Bool
}

public struct IngestResult: Codable, Sendable, Equatable {
    public struct Rejected: Codable, Sendable, Equatable {
        public var index: Int
        public var reason: String
    }
    public var accepted: Int
    public var duplicates: Int
    /// Events accepted whose personal part was dropped for lack of consent (only anonymous counts kept).
    public var anonymized: Int
    public var rejected: [Rejected]
}
