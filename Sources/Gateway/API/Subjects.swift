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
    /// A data subject's rights: erasure and export.
    enum SubjectRoutes: RouteGroup {
        static let routes: [RouteSpec] = [
            .route(.post, "/v1/subjects/{subject}/erase", .subjectsErase) { service, _, context, principal in
                try jsonObject(await service.rights.erase(subject: try subject(context), principal: principal, note: context.audit))
            },
            .route(.get, "/v1/subjects/{subject}/export", .subjectsExport) { service, request, context, principal in
                let export = try await service.rights.export(subject: try subject(context), principal: principal, note: context.audit)
                return try sealedIfAsked(try encoder.encode(export), request, service)
            },
        ]
    }
}
