import Ingestion

/// When a source's data quality is judged bad: crossing any threshold logs a warning and turns `/health/ready` red.
public struct QualityThresholds: Sendable, Equatable {
    /// Seconds since a source last delivered an accepted event after which it is stale.
    public var maxStaleness: Double = 7 * 86_400
    /// Share of optional-but-expected fields present (device, dwell, currency…) below which a source is incomplete.
    public var minCompleteness: Double = 0.5
    public var maxRejectRate: Double = 0.2
    public var maxDuplicateRate: Double = 0.5
    /// Rates are judged only once a source has sent this many events.
    public var minEvents = 50
    public init() {}
}

/// Ingestion settings beyond the fixed limits of the parser.
public struct IngestionSettings: Sendable, Equatable {
    public var outliers = OutlierPolicy()
    public init() {}
}
