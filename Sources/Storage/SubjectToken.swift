import Vault

/// A pseudonymous subject identifier: keyed BLAKE2b of namespace and subject id, 32 lower-case hex characters.
/// The only subject identifier that leaves the privacy boundary.
public struct SubjectToken: Sendable, Hashable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String

    public init?(rawValue: String) {
        guard rawValue.utf8.count == 32, rawValue.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else { return nil }
        self.rawValue = rawValue
    }

    /// The token of a 16-byte digest: its hex rendering, which needs no validation.
    public init(digest: [UInt8]) {
        precondition(digest.count == 16, "a subject token is a 16-byte digest")
        rawValue = digest.hexString
    }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let token = SubjectToken(rawValue: raw) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a subject token"))
        }
        self = token
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }
    public static func < (l: SubjectToken, r: SubjectToken) -> Bool { l.rawValue < r.rawValue }
}
