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
    /// Events, feedback about what was shown, and the catalog.
    enum IngestRoutes: RouteGroup {
        static let routes: [RouteSpec] = [
            .route(.post, "/v1/events", .eventsWrite, ingestEvents),
            .route(.post, "/v1/feedback", .eventsWrite, ingestEvents),
            .route(.put, "/v1/items", .catalogWrite) { service, request, context, _ in
                struct Items: Decodable { var items: [CatalogItem] }
                let body = try await decode(Items.self, request, context)
                try await service.intake.upsertItems(body.items)
                return try json(["stored": body.items.count])
            },
        ]

        /// `POST /v1/events` and `POST /v1/feedback` (feedback is events about what was shown).
        static let ingestEvents: AuthorizedHandler = { service, request, context, principal in
            let body = try await collect(request, context)
            let gpc = request.headers[HTTPField.Name("Sec-GPC")!] == "1"
            let result = try await service.intake.ingest(body: body, principal: principal, gpcHeader: gpc, note: context.audit)
            if result.accepted + result.duplicates == 0 && !result.rejected.isEmpty {
                // Every event was refused: a 4xx in the one error shape, still naming each event's reason.
                let rejected = result.rejected.map { ["index": $0.index, "reason": $0.reason] as [String: Any] }
                return try jsonObject(
                    [
                        "error": [
                            "code": "unprocessable", "message": "every event of the batch was rejected; see 'rejected'",
                            "request_id": context.requestID,
                        ],
                        "accepted": 0, "duplicates": 0, "anonymized": 0, "rejected": rejected,
                    ], status: .unprocessableContent)
            }
            return try json(result)
        }
    }
}
