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
    /// The model: retraining and provenance.
    enum ModelRoutes: RouteGroup {
        static let routes: [RouteSpec] = [
            .route(.post, "/v1/model/train", .policyReload) { service, _, _, _ in
                let model = try await service.training.trainOffThePool()
                return try json(["model_version": model.version, "users": "\(model.users)", "items": "\(model.items.count)"])
            },
            .route(.get, "/v1/model/provenance", .auditRead) { service, request, context, principal in
                let subject = request.uri.queryParameters["subject"].map(String.init)
                return try await jsonObject(service.training.provenance(subject: subject, principal: principal, note: context.audit))
            },
        ]
    }
}
