/// One row of a ratings file: raw ids as they appear in the file.
public struct RatingRow: Sendable, Hashable {
    public var user: String
    public var item: String
    public var rating: Float
    public var timestamp: Int64

    public init(user: String, item: String, rating: Float, timestamp: Int64) {
        self.user = user
        self.item = item
        self.rating = rating
        self.timestamp = timestamp
    }
}

/// A parse error naming the line, never its content beyond the offending field count.
public struct DatasetError: Error, CustomStringConvertible, Sendable {
    public let line: Int
    public let reason: String
    public var description: String { "line \(line): \(reason)" }
}

public enum Dataset {
    /// Parses `user<TAB>item<TAB>rating<TAB>timestamp` lines (MovieLens u.data and the split files).
    public static func parseRatings(_ text: String) throws -> [RatingRow] {
        var rows: [RatingRow] = []
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.isEmpty { continue }
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count >= 4 else {
                throw DatasetError(line: lineNumber, reason: "expected 4 tab-separated fields (user, item, rating, timestamp), found \(fields.count)")
            }
            guard let rating = Float(fields[2]), let time = Int64(fields[3].trimmingWhitespace()) else {
                throw DatasetError(line: lineNumber, reason: "rating and timestamp must be numbers")
            }
            rows.append(RatingRow(user: String(fields[0]), item: String(fields[1]), rating: rating, timestamp: time))
        }
        return rows
    }

    /// The 19 genre columns of MovieLens 100K's `u.item`, in file order.
    public static let movieLensGenres = [
        "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
        "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
        "Thriller", "War", "Western",
    ]

    /// Items of a MovieLens `u.item` file (`id|title|date|video|url|19 genre flags`): id, title, genre indices and
    /// release year (0 when absent).
    public static func parseMovieLensItems(_ text: String) throws -> [(id: String, title: String, genres: [Int], year: Int)] {
        var items: [(String, String, [Int], Int)] = []
        var lineNumber = 0
        for line in text.split(separator: "\n") {
            lineNumber += 1
            let fields = line.split(separator: "|", omittingEmptySubsequences: false)
            guard fields.count >= 6 else { throw DatasetError(line: lineNumber, reason: "expected '|'-separated MovieLens item fields") }
            let flags = fields.suffix(19).enumerated().compactMap { $0.element.trimmingWhitespace() == "1" ? $0.offset : nil }
            let year = fields[2].split(separator: "-").last.flatMap { Int($0) } ?? 0
            items.append((String(fields[0]), String(fields[1]), flags, year))
        }
        return items
    }

    /// Content features of a MovieLens item: genres and release decade as exact features, title words as text.
    public static func movieLensContent(title: String, genres: [Int], year: Int) -> ItemContent {
        var categorical = ["cat:movie"] + genres.map { "genre:" + movieLensGenres[$0] }
        if year > 0 { categorical.append("decade:\(year / 10 * 10)") }
        // The title ends with the year in parentheses: not a word of the title.
        let words = ItemContent.words(title).filter { Int($0) == nil }
        return ItemContent(productType: "movie", categorical: categorical, text: words)
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        var s = self
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return s
    }
}
