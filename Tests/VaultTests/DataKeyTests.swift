import Foundation
import Testing

@testable import Vault

@Suite struct DataKeyTests {
    static let token = "0123456789abcdef0123456789abcdef"
    let owner = DataKeyOwner(token: DataKeyTests.token, use: .personalization)

    /// Every sealed row on disk was sealed with these bytes as its associated data: if they changed, no stored row
    /// would open again. Written out by hand: "veil.row.v1", then table, row and owner, each as a 4-byte big-endian
    /// length and its bytes.
    @Test func theRowAssociatedDataIsExactlyTheOneOnDisk() {
        let address = RowAddress(table: .interactions, row: "r-1", owner: owner)
        #expect(
            address.associatedData.hexString
                == "7665696c2e726f772e76310000000c696e746572616374696f6e7300000003722d3100000030"
                + "303132333435363738396162636465663031323334353637383961626364656623706572736f6e616c697a6174696f6e")
        #expect(owner.rawValue == "\(Self.token)#personalization")
        #expect(DataKeyOwner(token: Self.token, use: .identity).rawValue == "\(Self.token)#identity")
    }

    /// The key store holds each data key wrapped under this associated data, the owner's name in the key store.
    @Test func theWrappingAssociatedDataIsExactlyTheOneInTheKeyStore() {
        #expect(KeyRing.wrapAD("\(Self.token)#identity") == Array("subject_keys|\(Self.token)#identity".utf8))
    }

    @Test func aSealedRowOpensOnlyAtItsAddressWithItsOwnersKey() throws {
        let dir = NSTemporaryDirectory() + "veil-datakey-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ring = try KeyRing.initialize(directory: dir)
        let (key, wrapped) = ring.newDataKey(for: owner)
        let address = RowAddress(table: .interactions, row: "r-1", owner: owner)
        let sealed = key.seal(Array("viewed sku-1".utf8), at: address)
        // The key as stored, unwrapped again (a restart), opens the row.
        #expect(try ring.unwrapDataKey(wrapped, for: owner).open(sealed, at: address) == Array("viewed sku-1".utf8))
        // Wrapped for one owner, it does not unwrap as another's.
        #expect(throws: VaultError.self) { try ring.unwrapDataKey(wrapped, for: DataKeyOwner(token: Self.token, use: .identity)) }
        // The same key bytes under another owner's name: the associated data differs, so authentication fails, whatever
        // the owner check in front of it would have said.
        let other = DataKeyOwner(token: Self.token, use: .identity)
        let sameBytes = DataKey(key: key.key, owner: other)
        #expect(throws: VaultError.self) { try sameBytes.open(sealed, at: RowAddress(table: .interactions, row: "r-1", owner: other)) }
        #expect(throws: VaultError.self) { try key.open(sealed, at: RowAddress(table: .interactions, row: "r-2", owner: owner)) }
        #expect(throws: VaultError.self) { try key.open(sealed, at: RowAddress(table: .profiles, row: "r-1", owner: owner)) }
        // Re-wrapped under a new master version, it still opens the row.
        try KeyRing.rotate(directory: dir)
        let rotated = try KeyRing.load(directory: dir)
        let rewrapped = try rotated.rewrapDataKey(wrapped, ownerName: owner.rawValue)
        #expect(try rotated.unwrapDataKey(rewrapped, for: owner).open(sealed, at: address) == Array("viewed sku-1".utf8))
    }
}
