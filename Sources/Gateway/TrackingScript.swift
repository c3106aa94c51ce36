/// Files compiled into the binary by the EmbedScript plugin: `<name>_<extension>` for each web file of this target.
enum Embedded {}

/// The tracking script a shop puts on its pages (Sources/Gateway/sdk/veil.js, compiled into the binary), served at
/// `/sdk/veil.js` and, for pinning with Subresource Integrity, at ``versionedPath``.
public enum TrackingScript {
    public static let version = "1.0.0"
    public static let path = "/sdk/veil.js"
    /// Its bytes never change under this path: a page pins them with `integrity` (`veil sdk` prints it).
    public static let versionedPath = "/sdk/veil-\(version).js"
    public static var bytes: [UInt8] { Embedded.veil_js }
}
