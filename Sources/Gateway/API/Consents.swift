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
    /// Opt-ins, opt-outs and their history.
    enum ConsentRoutes: RouteGroup {
        static let routes: [RouteSpec] = [
            .route(.post, "/v1/consents", .consentWrite) { service, request, context, principal in
                let body = try await decode(ConsentService.ConsentRequest.self, request, context)
                let gpc = request.headers[HTTPField.Name("Sec-GPC")!] == "1"
                return try json(await service.consent.record(body, principal: principal, gpcHeader: gpc, note: context.audit), status: .created)
            },
            .route(.get, "/v1/consents/{subject}", .consentRead) { service, _, context, principal in
                try await jsonObject(service.consent.state(subject: try subject(context), principal: principal, note: context.audit))
            },
            .route(.get, "/v1/consents/{subject}/history", .consentRead) { service, _, context, principal in
                try await json(["events": service.consent.history(subject: try subject(context), principal: principal, note: context.audit)])
            },
        ]
    }
}
