import Foundation

/// The OpenAPI document shipped with the gateway (Sources/Gateway/openapi.yaml), served at /openapi.yaml.
public enum OpenAPI {
    public static let document: [UInt8] = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"), let data = try? Data(contentsOf: url) else { return [] }
        return Array(data)
    }()
}
