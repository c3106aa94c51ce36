import Foundation

/// Small bar charts as inline SVG, drawn on the server: no script, nothing fetched. Every text is escaped (a source's
/// name comes from clients).
enum Charts {
    static func bars(title: String, labels: [String], values: [Double], width: Int = 280, height: Int = 90) -> String {
        let top = max(values.max() ?? 0, 1)
        let slot = Double(width) / Double(max(values.count, 1))
        let plot = Double(height - 18)
        var svg = "<svg class=\"chart\" width=\"\(width)\" height=\"\(height)\" role=\"img\" "
        let summary = zip(labels, values).map { "\($0): \(Int($1))" }.joined(separator: ", ")
        svg += "aria-label=\"\(escape(title)): \(escape(summary))\"><title>\(escape(title))</title>"
        for (i, v) in values.enumerated() {
            let h = max(v > 0 ? 1 : 0, plot * v / top)
            let x = Double(i) * slot + slot * 0.15
            svg +=
                "<rect x=\"\(fmt(x))\" y=\"\(fmt(plot - h))\" width=\"\(fmt(slot * 0.7))\" height=\"\(fmt(h))\"><title>\(escape(labels[i])): \(Int(v))</title></rect>"
            svg += "<text x=\"\(fmt(x + slot * 0.35))\" y=\"\(height - 4)\" text-anchor=\"middle\">\(escape(labels[i]))</text>"
        }
        return svg + "</svg>"
    }

    static func fmt(_ x: Double) -> String { String(Int((x * 10).rounded())) == "0" ? "0" : String(format: "%.1f", x) }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}
