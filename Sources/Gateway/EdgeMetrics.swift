import HTTPTypes
import Prometheus
import VeilCore

/// The HTTP edge's metrics (requests, durations per route, the wait on audit entries), registered in the core's
/// registry so that `GET /metrics` renders them together.
struct EdgeMetrics: Sendable {
    let requests: Counter
    /// Per route template and method, built once so that recording takes no lock beyond the histogram's own.
    private let durations: [String: [HTTPRequest.Method: DurationHistogram]]
    private let unmatchedDuration: DurationHistogram
    /// How long each audited request waited on its audit entry (part of its duration): until the entry was durable,
    /// then until a thread was free to resume the request. `veil_audit_durable_wait_seconds_total` is the first part.
    let auditWait: DurationHistogram

    static let requestBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    static let auditBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .seconds(1),
    ]

    init(registry: PrometheusCollectorRegistry, routes: [RouteSpec] = RouteTable.routes) {
        let name = VeilMetrics.name
        requests = registry.makeCounter(descriptor: name("requests", "total", "HTTP requests handled"))
        let duration = name(
            "request_duration", "seconds", "Time from a request's arrival at the gateway to its response, its audit entry's wait included")
        var durations: [String: [HTTPRequest.Method: DurationHistogram]] = [:]
        for route in routes {
            durations[route.path, default: [:]][route.method] = registry.makeDurationHistogram(
                descriptor: duration, labels: [("method", route.method.rawValue), ("route", route.path)], buckets: Self.requestBuckets)
        }
        self.durations = durations
        unmatchedDuration = registry.makeDurationHistogram(
            descriptor: duration, labels: [("method", "any"), ("route", "unmatched")], buckets: Self.requestBuckets)
        auditWait = registry.makeDurationHistogram(
            descriptor: name(
                "audit_wait", "seconds", "Time an audited request waited on its audit entry: until durable, then for a thread to resume it"),
            buckets: Self.auditBuckets)
    }

    /// The duration histogram of a route template (`context.endpointPath`) and method; nil paths are unmatched requests.
    func duration(path: String?, method: HTTPRequest.Method) -> DurationHistogram {
        path.flatMap { durations[$0]?[method] } ?? unmatchedDuration
    }
}
