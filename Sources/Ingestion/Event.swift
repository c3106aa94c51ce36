import Foundation
import Policy
import Pseudonymization

/// The kinds of event Veil accepts, each with its current schema version.
public enum EventKind: String, Sendable, CaseIterable, Codable {
    case pageView = "page_view"
    case purchase
    case search
    case profile
    case feedback

    /// The schema version written today; older versions are upgraded when read.
    public var currentSchemaVersion: Int {
        switch self {
        case .pageView: return 2
        default: return 1
        }
    }

    /// Optional fields a complete event of this kind carries: their share is the source's completeness.
    public var expectedFields: [[String]] {
        switch self {
        case .pageView: return [["dwell_ms"], ["scroll_depth"], ["device"], ["referrer"]]
        case .purchase: return [["order"], ["lines"]]
        case .search: return [["query"], ["shown"]]
        case .profile: return [["age", "birth_year"], ["gender"], ["location"], ["device"]]
        case .feedback: return [["item"], ["signal"]]
        }
    }

    /// The policy data category this kind belongs to.
    public var category: String {
        switch self {
        case .pageView: return "browsing"
        case .purchase: return "purchases"
        case .search: return "search"
        case .profile: return "demographics"
        case .feedback: return "feedback"
        }
    }
}

/// One item signal an event carries, for the feature store.
public struct ItemSignal: Sendable, Equatable {
    public var item: String
    public var kind: InteractionKind
    public var weight: Float
}

/// A validated, cleaned, normalized event. Still carries the raw subject id: it has not crossed the privacy
/// boundary yet. The gateway tokenizes and minimizes it before anything is stored.
public struct CleanEvent: Sendable, Equatable {
    public var id: String
    public var kind: EventKind
    public var subject: String
    /// Seconds since the epoch, UTC.
    public var timestamp: Int64
    public var source: String
    /// Fields after cleaning, before minimization.
    public var fields: [String: FieldValue]
    /// The item signals derived from the event.
    public var signals: [ItemSignal]
    /// Values flagged as outliers and capped, by field name.
    public var cappedFields: [String]
    /// Share of the kind's expected fields present (1 = complete).
    public var completeness: Double
    /// Content fingerprint for duplicate detection within a time window (no raw identifiers in clear).
    public var contentKey: String
}

/// Why one event of a batch was refused.
public struct Rejection: Sendable, Equatable, Codable {
    public var index: Int
    public var reason: String
    /// The event's `source` when it could be read (for per-source quality); not part of the answer.
    public var source: String?

    public init(index: Int, reason: String, source: String? = nil) {
        self.index = index
        self.reason = reason
        self.source = source
    }

    enum CodingKeys: String, CodingKey { case index, reason }
}
