import ArgumentParser
import Foundation
import Serving
import Recommender

struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Evaluate recommenders on a train/test split (protocol of shared/data/ml-100k/split/PROTOCOL.md).")

    @Option(help: "ranking (top-k per user, PROTOCOL.md) or next-item (sessions: HitRate@k and MRR@k).") var task = "ranking"
    @Option(help: "Training ratings: user<TAB>item<TAB>rating<TAB>timestamp.") var train: String?
    @Option(help: "Test ratings, same format.") var test: String?
    @Flag(help: "next-item only: evaluate on sessions of the generated sample shop instead of --train/--test.") var sampleShop = false
    @Option(help: "next-item only: GRU4Rec training epochs.") var epochs = 5
    @Option(help: "MovieLens u.item file: the catalog (coverage denominator) and item genres.") var items: String?
    @Option(help: "Model name or 'all': \(ModelCatalog.names.joined(separator: ", ")).") var model: String = "all"
    @Option(help: "List length.") var k: Int = 10
    @Option(help: "Threads for training and scoring.") var threads: Int = 1
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Option(help: "How many of the most interacted-with items EASE models (its fit grows with the cube of this).")
    var easeMaxItems = EASE.defaultMaxItems
    @Flag(help: "One JSON object per model per line.") var json = false

    func validate() throws {
        guard ["ranking", "next-item"].contains(task) else { throw ValidationError("--task must be ranking or next-item") }
        guard (1...100).contains(k) else { throw ValidationError("--k must be between 1 and 100") }
        if !(task == "next-item" && sampleShop) && (train == nil || test == nil) {
            throw ValidationError("give --train and --test (or, with --task next-item, --sample-shop)")
        }
        if task == "next-item" {
            guard model == "all" || NextItem.models.contains(model) else {
                throw ValidationError("unknown next-item model '\(model)'; choose one of: \(NextItem.models.joined(separator: ", ")), all")
            }
            return
        }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard easeMaxItems >= 1 else { throw ValidationError("--ease-max-items must be at least 1") }
        guard model == "all" || ModelCatalog.names.contains(model) else {
            throw ValidationError("unknown model '\(model)'; choose one of: \(ModelCatalog.names.joined(separator: ", ")), all")
        }
    }

    func run() throws {
        if task == "next-item" { return try runNextItem() }
        let trainRows = try Dataset.parseRatings(readText(train!))
        let testRows = try Dataset.parseRatings(readText(test!))
        let catalog =
            try items.map {
                try Dataset.parseMovieLensItems(readText($0)).map {
                    (id: $0.id, content: Optional(Dataset.movieLensContent(title: $0.title, genres: $0.genres, year: $0.year)))
                }
            } ?? []
        let split = EvaluationSplit(train: trainRows, test: testRows, catalog: catalog)
        let progress = TerminalProgress("evaluate")
        var options = ModelCatalog.Options()
        options.threads = threads
        options.seed = seed
        options.easeMaxItems = easeMaxItems
        options.progress = progress.reporter
        let names = model == "all" ? ModelCatalog.names : [model]
        if !json {
            print("| model | P@\(k) | R@\(k) | NDCG@\(k) | MAP@\(k) | coverage | train s | score s |")
            print("|---|---|---|---|---|---|---|---|")
        }
        for name in names {
            let clock = ContinuousClock()
            var fitted: (any ScoringModel)?
            let trainTime = try clock.measure { fitted = try ModelCatalog.fit(name, on: split, options: options) }
            var lists: [[Int32]] = []
            options.progress.phase(name, "top-\(k) for every user", total: split.users.count)
            let scoreTime = clock.measure { lists = split.recommendAll(fitted!, k: k, threads: threads) }
            let m = split.metrics(lists, k: k)
            let trainSeconds = trainTime.seconds, scoreSeconds = scoreTime.seconds
            if json {
                let fields: [String] = [
                    "\"model\":\"\(name)\"", "\"precision\":\(fmt(m.precision))", "\"recall\":\(fmt(m.recall))",
                    "\"ndcg\":\(fmt(m.ndcg))", "\"map\":\(fmt(m.map))", "\"coverage\":\(fmt(m.coverage))",
                    "\"train_s\":\(fmt(trainSeconds))", "\"score_s\":\(fmt(scoreSeconds))",
                ]
                print("{" + fields.joined(separator: ",") + "}")
            } else {
                print(
                    "| \(name) | \(fmt(m.precision)) | \(fmt(m.recall)) | \(fmt(m.ndcg)) | \(fmt(m.map)) | \(fmt(m.coverage, 3)) | \(fmt(trainSeconds, 3)) | \(fmt(scoreSeconds, 3)) |"
                )
            }
        }
        progress.finish(
            "\(names.count) model\(names.count == 1 ? "" : "s") trained and evaluated on \(split.users.count) users, \(split.items.count) items")
    }

    func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read \(path); check the path")
        }
        return String(decoding: data, as: UTF8.self)
    }
}

func fmt(_ x: Double, _ digits: Int = 4) -> String { String(format: "%.\(digits)f", x) }

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
