import Persistence
import Storage
import Vault

/// Rotating the master key while requests keep running.
public struct KeyRotation: Sendable {
    let keysDirectory: String
    let passphrase: String?
    let keys: SubjectKeys
    let store: any OperationalStore

    /// Adds a master key version, swaps the reloaded ring in, then re-wraps every stored data key under it in batches.
    /// The caller audits it (the HTTP route through its request entry).
    /// - Throws: ``CoreError`` (conflict) on a database other gateways share: their rings would not hold the new
    ///   version, and could not open the keys re-wrapped under it.
    public func rotateAndRewrap() async throws -> (version: UInt32, rewrapped: Int) {
        guard !store.isShared else {
            throw CoreError(
                .conflict, "rotation_needs_every_gateway",
                "other gateways share this database and would not hold the new master key: stop them, run `veil keys rotate` and "
                    + "`veil keys rewrap` on the keys directory every gateway reads, then start them again")
        }
        // Argon2id for a passphrase, once per master version: off the cooperative pool.
        let (directory, passphrase) = (keysDirectory, self.passphrase)
        let (version, ring) = try await offThePool {
            let version = try KeyRing.rotate(directory: directory, passphrase: passphrase)
            return (version, try KeyRing.load(directory: directory, passphrase: passphrase))
        }
        keys.replaceRing(ring)
        var total = 0
        while true {
            let keys = self.keys, store = self.store
            let n = try await offThePool { try keys.rewrapBatch(in: store, batchSize: 200) }
            if n == 0 { break }
            total += n
            await Task.yield()
        }
        return (version, total)
    }
}
