import ArgumentParser
import Audit
import Foundation
import Serving
import VeilCore
import Gateway
import Logging
import Pseudonymization

struct RetentionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "retention", abstract: "Retention tools.", subcommands: [Run.self])

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete data past its purpose's retention and shred subjects whose consent lapsed (also scheduled in `veil serve`).")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let report = try await openService(common).retention.run()
            print(
                "retention: deleted \(report.interactionsDeleted) interactions and \(report.deliveriesDeleted) delivery fingerprints; shredded \(report.lapsedConsentsShredded) subjects whose consent lapsed"
            )
        }
    }
}

struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Import data through the consent and pseudonymization path.", subcommands: [MovieLens.self])

    struct MovieLens: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "movielens",
            abstract: "Import MovieLens 100K (u.data, u.item, u.user): items, consents (method import), profiles and ratings as feedback events.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Directory holding u.data, u.item and u.user.") var directory: String
        @Option(help: "Token namespace of the imported subjects.") var namespace = "movielens"

        func run() async throws {
            func read(_ name: String) throws -> String {
                let path = (directory as NSString).appendingPathComponent(name)
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw ValidationError("cannot read \(path); pass the MovieLens 100K directory")
                }
                return String(decoding: data, as: UTF8.self)
            }
            let service = try openService(common)
            let progress = TerminalProgress("import")
            let report = try await service.movieLens.run(
                ratings: try read("u.data"), items: try read("u.item"), users: try read("u.user"), namespace: namespace,
                progress: progress.reporter)
            progress.finish("\(report.subjects) subjects and \(report.ratings) ratings imported")
            print(
                "imported \(report.items) items, \(report.subjects) subjects (consent recorded with method import), \(report.ratings) ratings (\(report.rejected) rejected)"
            )
        }
    }
}

struct LinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "link", abstract: "Identity linkage across sources (admin; audited).", subcommands: [Add.self, Undo.self, Legacy.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a subject's matching keys (as keyed hashes) and link it to an earlier token of the same person if a rule matches.")
        @OptionGroup var common: CommonOptions
        @Argument var subject: String
        @Option(help: "Token namespace of the subject's source.") var namespace = "default"
        @Option var email: String?
        @Option var name: String?
        @Option var postcode: String?

        func run() async throws {
            let link = try await openService(common).subjects.link(
                subject, namespace: namespace,
                attributes: LinkAttributes(email: email, name: name, postcode: postcode), actor: "cli")
            if let link {
                print("linked by \(link.rule) (score \(String(format: "%.2f", link.score))) to canonical token \(link.canonical)")
            } else {
                print("no rule matched; the subject keeps its own token")
            }
        }
    }

    struct Undo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Undo a subject's identity link.")
        @OptionGroup var common: CommonOptions
        @Argument var subject: String
        @Option var namespace = "default"

        func run() async throws {
            let existed = try await openService(common).subjects.unlink(subject, namespace: namespace, actor: "cli")
            print(existed ? "link undone" : "the subject had no link")
        }
    }

    struct Legacy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count (or, with --undo, remove) the links made before links were scoped to a tenant; they may join subjects of two namespaces."
        )
        @OptionGroup var common: CommonOptions
        @Flag(help: "Remove them all (audited); their subjects keep their own tokens from then on.") var undo = false

        func run() async throws {
            let n = try await openService(common).subjects.legacyLinks(undo: undo, actor: "cli")
            print(
                undo
                    ? "removed \(n) links made before links were scoped"
                    : "\(n) links made before links were scoped remain; `veil link legacy --undo` removes them")
        }
    }
}

struct QualityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quality",
        abstract: "Data quality per source: freshness, completeness, reject and duplicate rates, outliers.",
        discussion: "Thresholds come from the `quality` section of --config. Exits 1 when a source crosses one (as /health/ready turns red).")
    @OptionGroup var common: CommonOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let report = try await openService(common, logger: quietLogger()).dataQuality.report()
        if json {
            try printJSON(report.sources)
        } else if report.sources.isEmpty {
            print("no events received yet")
        } else {
            print("| source | events | last event | completeness | rejected | duplicates | outliers | status |")
            print("|---|---|---|---|---|---|---|---|")
            for s in report.sources {
                let age = s.freshnessSeconds.map { "\(Int($0)) s ago" } ?? "never"
                let status = s.problems.isEmpty ? "ok" : s.problems.joined(separator: "; ")
                print(
                    "| \(s.source) | \(s.events) | \(age) | \(percent(s.completeness)) | \(percent(s.rejectRate)) | \(percent(s.duplicateRate)) | \(s.outliers) | \(status) |"
                )
            }
        }
        if !report.healthy { throw ExitCode(1) }
    }

    func percent(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }
}

struct SegmentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segments",
        abstract: "Cluster subjects into segments and print each segment's size and the features that describe it.",
        discussion: "k-means picks k by silhouette unless --k is given; Ward is cut at --k (default 4). Audited.")
    @OptionGroup var common: CommonOptions
    @Option(help: "behaviour, demographics or both.") var view: String = "behaviour"
    @Option(help: "kmeans or ward.") var method: String = "kmeans"
    @Option(help: "Number of segments (default: chosen by silhouette for k-means, 4 for Ward).") var k: Int?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard SegmentModel.View(rawValue: view) != nil else { throw ValidationError("--view must be behaviour, demographics or both") }
        guard SegmentModel.Method(rawValue: method) != nil else { throw ValidationError("--method must be kmeans or ward") }
        if let k, !(2...50).contains(k) { throw ValidationError("--k must be between 2 and 50") }
    }

    func run() async throws {
        let service = try openService(common, logger: quietLogger())
        guard
            let model = try await service.training.segmentReport(
                view: SegmentModel.View(rawValue: view)!, method: SegmentModel.Method(rawValue: method)!,
                k: k, actor: "cli")
        else {
            throw CLIError(message: "too few subjects with data to segment (need 4); send events first, or run `veil demo --dir DIR`")
        }
        _ = try? await service.audit.checkpoint()
        if json { return try printJSON(model.segments) }
        print(
            "\(model.segments.count) segments (\(model.method.rawValue), \(model.view.rawValue) view), silhouette \(String(format: "%.3f", model.silhouette))"
        )
        print("| segment | name | size | describing features |")
        print("|---|---|---|---|")
        for s in model.segments { print("| \(s.id) | \(s.name) | \(s.size) | \(s.traits.joined(separator: ", ")) |") }
    }
}

struct ExperimentsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "experiments", abstract: "A/B tests and model canaries.", subcommands: [Report.self])

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "CTR and conversion per variant with 95% Wilson intervals and a two-proportion z-test against the first variant.",
            discussion: "NAME is an experiment of the configuration file, or canary:<model version>.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Experiment name.") var name: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let report = try await openService(common, logger: quietLogger()).review.experimentReport(name)
            guard !report.arms.isEmpty else {
                throw CLIError(message: "no exposures recorded for experiment '\(name)'; check the name in the configuration file")
            }
            if json { return try printJSON(report) }
            func pct(_ x: Double) -> String { String(format: "%.2f%%", x * 100) }
            print("| variant | exposures | clicks | CTR (95% CI) | purchases | conversion (95% CI) | z (CTR) | p (CTR) | p (conversion) |")
            print("|---|---|---|---|---|---|---|---|---|")
            for a in report.arms {
                let z = a.ctrZ.map { String(format: "%.2f", $0) } ?? "control"
                let p = a.ctrP.map { String(format: "%.4f", $0) } ?? "–", pc = a.conversionP.map { String(format: "%.4f", $0) } ?? "–"
                print(
                    "| \(a.variant) | \(a.exposures) | \(a.clicks) | \(pct(a.ctr)) [\(pct(a.ctrInterval[0])), \(pct(a.ctrInterval[1]))] | \(a.purchases) | \(pct(a.conversion)) [\(pct(a.conversionInterval[0])), \(pct(a.conversionInterval[1]))] | \(z) | \(p) | \(pc) |"
                )
            }
        }
    }
}
