/// The one error type of the Vault module.
///
/// Messages name files and fixes but never key bytes, plaintext or subject identifiers.
public struct VaultError: Error, Equatable, CustomStringConvertible, Sendable {
    /// What went wrong, for callers that branch on it.
    public enum Code: String, Sendable {
        /// libsodium could not be initialised.
        case sodiumUnavailable
        /// Key material has the wrong length.
        case invalidKeyLength
        /// An envelope is too short or has an unknown format byte.
        case malformedEnvelope
        /// The envelope names a key version the ring does not hold (never created, or retired).
        case unknownKeyVersion
        /// Authentication failed: wrong key, wrong associated data or a changed byte.
        case authenticationFailed
        /// A key file is missing.
        case missingKeyFile
        /// A key file is readable by group or others.
        case insecureKeyFile
        /// A key file or directory could not be read or written.
        case keyFileIO
        /// A signature did not verify.
        case invalidSignature
        /// Key derivation from a passphrase failed (usually: not enough memory).
        case passphraseDerivationFailed
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static func == (lhs: VaultError, rhs: VaultError) -> Bool { lhs.code == rhs.code }
}
