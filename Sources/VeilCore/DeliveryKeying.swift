import FeatureStore
import Synchronization
import Vault

/// Keys event deliveries for deduplication: keyed hashes of each event's id and content, never the values.
public final class DeliveryKeying: Sendable {
    private let fingerprinter: Fingerprinter
    private let legacyFingerprinter: Fingerprinter
    private let legacyRemain: Mutex<Bool>

    init(ring: KeyRing, legacyRemain: Bool) {
        fingerprinter = ring.fingerprinter(for: .deliveries)
        legacyFingerprinter = ring.fingerprinter(for: .legacyDeliveries)
        self.legacyRemain = Mutex(legacyRemain)
    }

    /// Whether deliveries recorded under the keys of before remain (read at start, again after each retention sweep).
    public var legacy: Bool {
        get { legacyRemain.withLock { $0 } }
        set { legacyRemain.withLock { $0 = newValue } }
    }

    /// An event's delivery keys: its id and content under the deliveries' own key (kind and namespace length-prefixed,
    /// so no two inputs run together), and while deliveries of before remain, the keys they were recorded under.
    func keys(namespace: String, id: String, content: String) -> DeliveryLog.Keys {
        func digest(_ kind: String, _ value: String) -> String {
            var message: [UInt8] = []
            message.appendLengthPrefixed(kind)
            message.appendLengthPrefixed(namespace)
            message.append(contentsOf: value.utf8)
            return fingerprinter.digest(message, length: 16).hexString
        }
        var keys = DeliveryLog.Keys(id: digest("id", id), content: digest("content", content))
        if legacy {
            func legacy(_ value: String) -> String { legacyFingerprinter.digest(Array("\(namespace)|\(value)".utf8), length: 16).hexString }
            keys.legacy = (legacy(id), legacy(content))
        }
        return keys
    }
}
