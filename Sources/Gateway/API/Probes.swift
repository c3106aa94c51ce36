import Audit
import FeatureStore
import Foundation
import Serving
import VeilCore
import HTTPTypes
import Ingestion
import Hummingbird
import Logging
import Prometheus
import Policy

extension API {
    /// Public probes and static files: no principal, not audited.
    enum ProbeRoutes: RouteGroup {
        static let routes: [RouteSpec] = [
            .probe(.get, "/health/live") { _, _, _ in try json(["status": "ok"]) },
            .probe(.get, "/health/ready", ready),
            .probe(.get, "/metrics") { service, _, _ in
                Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                    body: .init(byteBuffer: ByteBuffer(bytes: service.metrics.render(audit: service.audit.stats))))
            },
            .probe(.get, "/openapi.yaml") { _, _, _ in
                Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: ByteBuffer(bytes: OpenAPI.document)))
            },
            .probe(.get, TrackingScript.path) { _, _, _ in script(cache: "public, max-age=300") },
            .probe(.get, TrackingScript.versionedPath) { _, _, _ in script(cache: "public, max-age=31536000, immutable") },
        ]

        /// Ready when the database answers, its disks have room and no source crosses a data-quality threshold.
        static let ready: Handler = { service, _, _ in
            guard await service.databaseReachable() else {
                throw GatewayError(.serviceUnavailable, "not_ready", "the database does not answer")
            }
            guard service.storage.writable() else { throw GatewayError.storageFull }
            guard let quality = await service.dataQuality.watch(force: true) else {
                throw GatewayError(.serviceUnavailable, "not_ready", "data quality could not be read")
            }
            let failing = quality.sources.filter { !$0.problems.isEmpty }.count
            guard failing == 0 else {
                throw GatewayError(
                    .serviceUnavailable, "not_ready",
                    "data quality: \(failing) source(s) cross a threshold; see `veil quality` or veil_source_healthy on /metrics")
            }
            let body: [String: String] = [
                "database": "ok", "data_quality": "ok", "model": service.models.model?.version ?? "none", "policy": service.policy.version,
            ]
            return try json(body)
        }
    }
}
