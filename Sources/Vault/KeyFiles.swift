#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Foundation

/// Reading and writing secret key files: mode 0600, exclusive creation, permission and length checks.
enum KeyFiles {
    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    /// Reads a secret file, refusing one that group or others can read.
    static func readSecret(_ path: String, expectedCount: Int) throws -> SecretKey {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw VaultError(.missingKeyFile, "key file \(path) is missing; create the key ring with `veil keys init --keys \(directoryOf(path))`")
        }
        if info.st_mode & 0o077 != 0 {
            throw VaultError(.insecureKeyFile, "key file \(path) is readable by group or others; fix it with `chmod 600 \(path)`")
        }
        guard var bytes = FileManager.default.contents(atPath: path).map(Array.init) else {
            throw VaultError(.keyFileIO, "key file \(path) cannot be read; check its owner and permissions")
        }
        defer { bytes.wipe() }
        guard bytes.count == expectedCount else {
            throw VaultError(
                .invalidKeyLength,
                "key file \(path) holds \(bytes.count) bytes, expected \(expectedCount); restore it from backup or recreate the key ring")
        }
        return try SecretKey(copying: bytes)
    }

    /// Writes a new secret file with mode 0600; never overwrites.
    static func writeSecret(_ path: String, bytes: [UInt8]) throws {
        try write(path, bytes: bytes, mode: 0o600)
    }

    /// Writes a new public file with mode 0644; never overwrites.
    static func writePublic(_ path: String, bytes: [UInt8]) throws {
        try write(path, bytes: bytes, mode: 0o644)
    }

    private static func write(_ path: String, bytes: [UInt8], mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard fd >= 0 else {
            if errno == EEXIST {
                throw VaultError(.keyFileIO, "\(path) already exists; refusing to overwrite key material")
            }
            throw VaultError(.keyFileIO, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else {
            throw VaultError(.keyFileIO, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func ensureDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw VaultError(.keyFileIO, "cannot create key directory \(path); check that its parent is writable")
        }
    }

    static func directoryOf(_ path: String) -> String {
        (path as NSString).deletingLastPathComponent
    }
}
