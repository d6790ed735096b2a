import Testing

import ParallelCNN

/// The two matrix kernels of the generic CPU layers. Their blocks (4×32 and 4×4 with 32 vector
/// registers, 6×16 and 4×1 with 16, 1×64 for a single row) must give every element the same
/// value as computing it alone: the threads and MPI layer strategies split a pass's rows or
/// columns anywhere and rely on that for bit-identical results. These run whichever blocks this
/// machine's build uses.
struct MatrixKernelTests {
    /// Values that make rounding order visible: mixed signs and magnitudes.
    static func values(_ count: Int, seed: UInt32) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return (Float(state >> 8) / Float(1 << 24) - 0.5) * (state & 1 == 0 ? 1 : 37)
        }
    }

    @Test(
        "matrixMultiply: each element as computed alone, for whole and split ranges",
        arguments: [1, 2, 3, 5, 6, 7, 13], [false, true])
    func matrixMultiply(rows: Int, transposed: Bool) {
        for columns in [1, 15, 16, 17, 33, 64, 65, 100, 130] {
            for depth in [1, 3, 16, 25] {
                for withBias in [false, true] {
                    let a = Self.values(rows * depth + 16, seed: UInt32(rows * 7 + depth))
                    let b = Self.values(depth * columns + 16, seed: UInt32(columns * 3 + depth))
                    let bias = Self.values(rows, seed: 5)
                    let (aRow, aColumn) = transposed ? (1, rows) : (depth, 1)
                    func run(_ r: Range<Int>, _ c: Range<Int>, into out: inout [Float]) {
                        a.withUnsafeBufferPointer { a in
                            b.withUnsafeBufferPointer { b in
                                bias.withUnsafeBufferPointer { bias in
                                    out.withUnsafeMutableBufferPointer { out in
                                        CPULayers.matrixMultiply(
                                            rows: r, columns: c, depth: depth, a: a.baseAddress!, aRow: aRow, aColumn: aColumn,
                                            b: b.baseAddress!, bRow: columns, c: out.baseAddress!, cRow: columns,
                                            bias: withBias ? bias.baseAddress! : nil)
                                    }
                                }
                            }
                        }
                    }
                    var whole = [Float](repeating: .nan, count: rows * columns)
                    run(0..<rows, 0..<columns, into: &whole)
                    var alone = [Float](repeating: .nan, count: rows * columns)
                    for i in 0..<rows { for j in 0..<columns { run(i..<(i + 1), j..<(j + 1), into: &alone) } }
                    var split = [Float](repeating: .nan, count: rows * columns)
                    let (r, c) = (rows / 2, columns / 3)
                    for rs in [0..<r, r..<rows] { for cs in [0..<c, c..<columns] { run(rs, cs, into: &split) } }
                    #expect(whole.map(\.bitPattern) == alone.map(\.bitPattern), "\(rows)x\(columns), depth \(depth)")
                    #expect(split.map(\.bitPattern) == alone.map(\.bitPattern), "\(rows)x\(columns), depth \(depth), split")
                    // And the product it claims to be, in double precision.
                    var worst = 0.0
                    for i in 0..<rows {
                        for j in 0..<columns {
                            var sum = withBias ? Double(bias[i]) : 0, size = abs(sum)
                            for k in 0..<depth {
                                let term = Double(a[i * aRow + k * aColumn]) * Double(b[k * columns + j])
                                sum += term
                                size += abs(term)
                            }
                            worst = max(worst, abs(Double(whole[i * columns + j]) - sum) / max(size, 1e-30))
                        }
                    }
                    #expect(worst < 1e-6, "\(rows)x\(columns), depth \(depth): relative error \(worst)")
                }
            }
        }
    }

    @Test("rowDots: each element as computed alone, for whole and split ranges", arguments: [1, 2, 3, 4, 5, 6, 9, 10, 16])
    func rowDots(rows: Int) {
        for columns in [1, 3, 4, 5, 9] {
            for length in [1, 15, 16, 17, 40, 100] {
                for (withBias, accumulate) in [(false, false), (true, false), (false, true)] {
                    // Rows are read 16 floats past their end (`readSlack`).
                    let a = Self.values(rows * length + CPULayers.readSlack, seed: UInt32(rows * 11 + length))
                    let b = Self.values(columns * length + CPULayers.readSlack, seed: UInt32(columns * 13 + length))
                    let bias = Self.values(rows, seed: 9), start = Self.values(rows * columns, seed: 4)
                    func run(_ r: Range<Int>, _ c: Range<Int>, into out: inout [Float]) {
                        a.withUnsafeBufferPointer { a in
                            b.withUnsafeBufferPointer { b in
                                bias.withUnsafeBufferPointer { bias in
                                    out.withUnsafeMutableBufferPointer { out in
                                        CPULayers.rowDots(
                                            rows: r, columns: c, length: length, a: a.baseAddress!, aRow: length, b: b.baseAddress!,
                                            bRow: length, c: out.baseAddress!, cRow: columns, bias: withBias ? bias.baseAddress! : nil,
                                            accumulate: accumulate)
                                    }
                                }
                            }
                        }
                    }
                    var whole = start, alone = start, split = start
                    run(0..<rows, 0..<columns, into: &whole)
                    for i in 0..<rows { for j in 0..<columns { run(i..<(i + 1), j..<(j + 1), into: &alone) } }
                    let (r, c) = (rows / 2, columns / 2)
                    for rs in [0..<r, r..<rows] { for cs in [0..<c, c..<columns] { run(rs, cs, into: &split) } }
                    #expect(whole.map(\.bitPattern) == alone.map(\.bitPattern), "\(rows)x\(columns), length \(length)")
                    #expect(split.map(\.bitPattern) == alone.map(\.bitPattern), "\(rows)x\(columns), length \(length), split")
                    var worst = 0.0
                    for i in 0..<rows {
                        for j in 0..<columns {
                            var sum = (withBias ? Double(bias[i]) : 0) + (accumulate ? Double(start[i * columns + j]) : 0)
                            var size = abs(sum)
                            for n in 0..<length {
                                let term = Double(a[i * length + n]) * Double(b[j * length + n])
                                sum += term
                                size += abs(term)
                            }
                            worst = max(worst, abs(Double(whole[i * columns + j]) - sum) / max(size, 1e-30))
                        }
                    }
                    #expect(worst < 1e-6, "\(rows)x\(columns), length \(length): relative error \(worst)")
                }
            }
        }
    }
}
