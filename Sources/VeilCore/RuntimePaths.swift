import Audit
import Consent
import FeatureStore
import Foundation
import Pseudonymization
import Persistence
import Storage
import Vault

/// Where one Veil instance keeps its state. Several instances can live side by side with different paths.
public struct RuntimePaths: Sendable {
    public var dataDirectory: String
    public var keysDirectory: String
    public var policiesDirectory: String

    public init(dataDirectory: String = "./data", keysDirectory: String = "./Keys", policiesDirectory: String = "./Policies") {
        self.dataDirectory = dataDirectory
        self.keysDirectory = keysDirectory
        self.policiesDirectory = policiesDirectory
    }

    /// Consent, tokens, features, catalog.
    public var operationalDatabase: String { (dataDirectory as NSString).appendingPathComponent("veil.sqlite") }
    /// Wrapped per-subject data keys: a file of its own under the key directory, never inside the data file, so a
    /// backup of the data holds ciphertext only and an erasure reaches every such backup.
    public var keyStoreDatabase: String { (keysDirectory as NSString).appendingPathComponent("subject-keys.sqlite") }
    /// The append-only audit log, kept apart from operational data.
    public var auditDatabase: String { (dataDirectory as NSString).appendingPathComponent("audit.sqlite") }
    /// The audit log's query index: derived data, rebuilt by `veil audit reindex`.
    public var auditIndexDatabase: String { (dataDirectory as NSString).appendingPathComponent("audit-index.sqlite") }
}
