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
    /// Recommendations for one subject.
    enum RecommendationRoutes: RouteGroup {
        static let routes: [RouteSpec] = [
            .route(.get, "/v1/recommendations/{subject}", .recommendationsRead) { service, request, context, principal in
                var query = Recommendations.RecommendationQuery()
                let params = request.uri.queryParameters
                if let k = params["k"] {
                    guard let value = Int(String(k)), (1...100).contains(value) else {
                        throw GatewayError.badRequest("k must be a whole number from 1 to 100")
                    }
                    query.k = value
                }
                query.categories = list(params["category"])
                query.exclude = Set(list(params["exclude"]))
                query.session = list(params["session"])
                guard query.session.count <= 50, query.exclude.count <= 500, query.categories.count <= 20 else {
                    throw GatewayError.unprocessable("too many values: at most 50 in session, 500 in exclude and 20 in category")
                }
                let body = try await service.recommendations.recommend(
                    subject: try subject(context), query: query, principal: principal,
                    requestID: context.requestID, note: context.audit)
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
            }
        ]
    }
}
