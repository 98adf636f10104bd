// The host's /metrics joins several registries' texts: each volume server's and the
// exporter's own. The text format wants every metric family in one group (one HELP and TYPE,
// then all its samples), so the texts are merged by family rather than put end to end. The
// texts come from swift-prometheus: a family starts with its HELP or TYPE line, and samples
// follow their TYPE line.

enum ExpositionMerge {
    static func merge(_ texts: [String]) -> String {
        var order: [String] = []
        var help: [String: Substring] = [:], type: [String: Substring] = [:]
        var samples: [String: [Substring]] = [:]
        for text in texts {
            var family: String?
            for line in text.split(separator: "\n") {
                if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                    let name = String(line.dropFirst(7).prefix(while: { $0 != " " }))
                    if samples[name] == nil {
                        order.append(name)
                        samples[name] = []
                    }
                    if line.hasPrefix("# HELP ") { help[name] = help[name] ?? line } else { type[name] = type[name] ?? line }
                    family = name
                } else if !line.hasPrefix("#"), let family {
                    samples[family]!.append(line)
                }
            }
        }
        var out = ""
        for name in order {
            for line in [help[name], type[name]].compactMap({ $0 }) + samples[name]! { out += line + "\n" }
        }
        return out
    }
}
