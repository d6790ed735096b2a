import Testing
import ParallelCNN

/// The one approximate comparison of the test suite: `|a - b| <= absolute + relative * |b|`,
/// with `b` the reference value. Returns the indices that fail, for a readable message.
func mismatches(_ a: [Float], _ b: [Float], absolute: Float, relative: Float) -> [Int] {
    precondition(a.count == b.count)
    return a.indices.filter { !(abs(a[$0] - b[$0]) <= absolute + relative * abs(b[$0])) }
}

func expectClose(
    _ a: [Float], _ b: [Float], absolute: Float, relative: Float, _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let bad = mismatches(a, b, absolute: absolute, relative: relative)
    #expect(
        bad.isEmpty,
        "\(what): \(bad.count) of \(a.count) differ, first at \(bad.first.map { "[\($0)] \(a[$0]) vs reference \(b[$0])" } ?? "")",
        sourceLocation: sourceLocation)
}
