/// The one definition of an app's subject id, used by every route and command before tokenizing.
///
/// An id is tokenized as its exact bytes. So that no layer could ever reshape it (trim, collapse, strip) and file
/// the same person under two tokens, ids that such a layer would change are refused instead of normalized: empty
/// or over 256 bytes, control or invisible format characters, leading or trailing whitespace, or whitespace runs.
public enum SubjectID {
    public static let maxBytes = 256

    /// Why `subject` is not a valid id, or nil when it is.
    public static func problem(_ subject: String) -> String? {
        let utf8 = subject.utf8
        guard !utf8.isEmpty, utf8.count <= maxBytes else { return "must be 1-\(maxBytes) bytes" }
        // Fast path, tested by value: printable ASCII (the property lookups below showed in a cached request's profile).
        if !utf8.contains(where: { $0 >= 0x80 }) {
            var previousSpace = true
            for c in utf8 {
                if c < 0x20 || c == 0x7F { return "must not contain control characters" }
                if c == 0x20 && previousSpace { return "must not start with whitespace or repeat it" }
                previousSpace = c == 0x20
            }
            return previousSpace ? "must not end with whitespace" : nil
        }
        var previousSpace = true
        for scalar in subject.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .control: return "must not contain control characters"
            case .format: return "must not contain invisible format characters"
            default: break
            }
            let space = scalar.properties.isWhitespace
            if space && previousSpace { return "must not start with whitespace or repeat it" }
            previousSpace = space
        }
        return previousSpace ? "must not end with whitespace" : nil
    }
}
