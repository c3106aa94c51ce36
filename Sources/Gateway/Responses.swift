import Foundation

/// One recommended item with why it was chosen.
public struct RecommendedItem: Codable, Sendable, Equatable {
    public var item: String
    public var score: Float
    /// `because-you-viewed`, `because-you-bought`, `because-you-searched`, `because-you-rated`, `for-you`,
    /// `popular`, `trending`.
    public var reason: String
    public var explanation: String
}

public struct RecommendationResponse: Codable, Sendable, Equatable {
    public var subject: String
    public var personalized: Bool
    public var model_version: String
    public var request_id: String
    public var items: [RecommendedItem]
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
