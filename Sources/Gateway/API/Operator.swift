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
    /// Keys and principals.
    enum OperatorRoutes: RouteGroup {
        static let routes: [RouteSpec] = [
            .route(.post, "/v1/keys/rotate", .keysRotate) { service, _, context, _ in
                let (version, rewrapped) = try await service.keyRotation.rotateAndRewrap()
                context.audit.update { $0.reason = "master key v\(version) added; \(rewrapped) subject keys re-wrapped" }
                return try jsonObject(["master_version": Int(version), "rewrapped": rewrapped])
            },
            .route(.delete, "/v1/principals/{name}", .principalsWrite) { service, _, context, principal in
                guard let raw = context.parameters.get("name"), let name = percentDecoded(raw) else {
                    throw GatewayError.badRequest("principal name is missing or badly percent-encoded")
                }
                // In force before this returns: the server's key cache forgets the principal once the revocation commits.
                // Its console sessions end at their next request, which finds the principal revoked.
                try await service.principals.revoke(name: name)
                // A known principal's name (a closed set of the operator's own), so the record says whom.
                context.audit.update { $0.reason = "principal '\(name)' revoked" }
                return try jsonObject(["revoked": name])
            },
        ]
    }
}
