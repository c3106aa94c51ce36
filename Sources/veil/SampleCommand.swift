import ArgumentParser
import Foundation
import Ingestion

struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample", abstract: "Generate a sample shop: items.json (PUT /v1/items body) and events.jsonl (one event per line).")

    @Option var users = 200
    @Option var items = 300
    @Option var days = 60
    @Option var seed: UInt64 = 7
    @Option(help: "Output directory.") var out = "./sample"

    func validate() throws {
        guard users > 0, items > 0, days > 0, users <= 1_000_000, items <= 1_000_000, days <= 3650 else {
            throw ValidationError("--users, --items and --days must be positive (and at most 1e6, 1e6, 3650)")
        }
    }

    func run() throws {
        let shop = SampleShop(users: users, items: items, days: days, seed: seed)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        try encoder.encode(["items": shop.items]).write(to: URL(fileURLWithPath: out + "/items.json"))
        var lines = Data()
        for e in shop.events { lines += try encoder.encode(e) + Data("\n".utf8) }
        try lines.write(to: URL(fileURLWithPath: out + "/events.jsonl"))
        print("wrote \(shop.items.count) items and \(shop.events.count) events for \(shop.users.count) users to \(out)")
    }
}
