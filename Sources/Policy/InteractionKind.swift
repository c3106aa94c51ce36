/// What a person did with an item, as a stored signal says it: the one list of interaction kinds that ingestion
/// produces, the feature store keeps (by raw value), and serving, experiments and configuration read.
public enum InteractionKind: String, Sendable, CaseIterable, Codable, Hashable {
    case pageView = "page_view"
    case purchase
    case searchClick = "search_click"
    case rating
    case click
    case addToCart = "add_to_cart"
    case dwell
    /// The hashed words of a search, stored as an interaction without an item.
    case searchTerms = "search_terms"

    /// What a feedback event's `signal` may name, in the order error messages list them.
    public static let feedbackSignals: [InteractionKind] = [.rating, .click, .addToCart, .dwell]

    /// The kinds that concern one item (every kind but search terms).
    public static var itemKinds: [InteractionKind] { allCases.filter { $0 != .searchTerms } }
}
