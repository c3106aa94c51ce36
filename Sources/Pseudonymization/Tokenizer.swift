import Storage
import Vault

/// Turns an app's subject ids into tokens. Stable for a key; namespaces (apps, tenants, or domains such as
/// recommender vs analytics) give unlinkable tokens for the same id.
public struct Tokenizer: Sendable {
    private let fingerprinter: Fingerprinter
    /// The namespace used when a caller names none.
    public let defaultNamespace: String

    /// - Parameter fingerprinter: the key ring's (or an ephemeral) fingerprinter for ``FingerprintPurpose/subjectTokens``.
    public init(_ fingerprinter: Fingerprinter, defaultNamespace: String = "default") {
        precondition(fingerprinter.purpose == .subjectTokens, "a tokenizer needs the subject-token fingerprinter")
        self.fingerprinter = fingerprinter
        self.defaultNamespace = defaultNamespace
    }

    /// The token of `subject` in `namespace`.
    public func token(for subject: String, namespace: String? = nil) -> SubjectToken {
        // Length-prefixing the namespace keeps ("ab", "c") and ("a", "bc") apart.
        let namespace = namespace ?? defaultNamespace
        var message: [UInt8] = []
        message.reserveCapacity(4 + namespace.utf8.count + subject.utf8.count)
        message.appendLengthPrefixed(namespace)
        message.append(contentsOf: subject.utf8)
        return SubjectToken(digest: fingerprinter.digest(message, length: 16))
    }
}
