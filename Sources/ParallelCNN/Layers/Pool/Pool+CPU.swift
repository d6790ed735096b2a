import _CPUVector

// Shape letters: C channels, Z window side, S stride, H/W input, OH/OW output, n samples in the
// block. The planes `[C][n]` are independent: channel `c` is planes `c·n..<(c+1)·n`.

extension CPULayers {
    /// Average or max pooling of the channels `channels`; max pooling records each window's first
    /// maximum (row-major) in `argmax` for the backward pass.
    static func poolForward(_ b: LayerBuffers, channels: Range<Int>) {
        let (Z, S, isMax) = poolWindow(b.layer)
        let (H, W) = (b.layer.input.height, b.layer.input.width)
        let (OH, OW) = (b.layer.output.height, b.layer.output.width)
        let scale = 1 / Float(Z * Z)
        // Plain pointers: reading them through `b` in the inner loop costs a reload each time.
        let x = UnsafePointer(b.x), y = b.y
        if pairPooling(b.layer) {
            // Whole output rows as vectors; for max pooling `argmax` holds which of the window's
            // four values won (0-3), which `poolBackward` reads the same way. A row's 16 values spill into
            // the next rows, which overwrite them; the rows too near the plane's end go through
            // `spill`, so no write leaves the plane.
            let which = b.argmax.map { UnsafeMutableRawPointer($0).assumingMemoryBound(to: CInt.self) }
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { spill in
                let spill = spill.baseAddress!
                let spillWhich = UnsafeMutableRawPointer(spill + 16).assumingMemoryBound(to: CInt.self)
                for c in planes(b, channels) {
                    for oy in 0..<OH {
                        let top = x + (c * H + 2 * oy) * W, o = (c * OH + oy) * OW
                        let inside = oy * OW + 16 <= OH * OW
                        if let which {
                            pcnn_max_pool_row16(top, top + W, inside ? y + o : spill, inside ? which + o : spillWhich)
                            if !inside { (which + o).update(from: spillWhich, count: OW) }
                        } else {
                            pcnn_average_pool_row16(top, top + W, scale, inside ? y + o : spill)
                        }
                        if !inside { (y + o).update(from: spill, count: OW) }
                    }
                }
            }
        } else if isMax, Z == 2, S == 2 {
            // The usual 2x2 window, stride 2, written out: the generic loop's branches cost
            // more than the four comparisons.
            let argmax = b.argmax!
            for c in planes(b, channels) {
                for oy in 0..<OH {
                    let top = (c * H + 2 * oy) * W
                    for ox in 0..<OW {
                        let i = top + 2 * ox
                        var best = x[i], bestIndex = i
                        if x[i + 1] > best { best = x[i + 1]; bestIndex = i + 1 }
                        if x[i + W] > best { best = x[i + W]; bestIndex = i + W }
                        if x[i + W + 1] > best { best = x[i + W + 1]; bestIndex = i + W + 1 }
                        let o = (c * OH + oy) * OW + ox
                        y[o] = best
                        argmax[o] = Int32(truncatingIfNeeded: bestIndex)
                    }
                }
            }
        } else if isMax {
            let argmax = b.argmax!
            for c in planes(b, channels) {
                for oy in 0..<OH {
                    for ox in 0..<OW {
                        let corner = (c * H + oy * S) * W + ox * S
                        var best = x[corner], bestIndex = corner
                        for wy in 0..<Z {
                            let row = corner + wy * W
                            for wx in 0..<Z where x[row + wx] > best {
                                best = x[row + wx]
                                bestIndex = row + wx
                            }
                        }
                        let o = (c * OH + oy) * OW + ox
                        y[o] = best
                        argmax[o] = Int32(truncatingIfNeeded: bestIndex)
                    }
                }
            }
        } else {
            for c in planes(b, channels) {
                for oy in 0..<OH {
                    for ox in 0..<OW {
                        let corner = (c * H + oy * S) * W + ox * S
                        var sum: Float = 0
                        for wy in 0..<Z {
                            for wx in 0..<Z { sum += x[corner + wy * W + wx] }
                        }
                        y[(c * OH + oy) * OW + ox] = sum * scale
                    }
                }
            }
        }
    }

    /// The input error of the channels `channels`.
    static func poolBackward(_ b: LayerBuffers, channels: Range<Int>) {
        let (Z, S, isMax) = poolWindow(b.layer)
        let (H, W) = (b.layer.input.height, b.layer.input.width)
        let (OH, OW) = (b.layer.output.height, b.layer.output.width)
        let dx = b.dx!, scale = 1 / Float(Z * Z)
        if pairPooling(b.layer) {
            // Past OW, `dy` and `argmax` hold the next row's values: they only reach input
            // columns past W, which the next input rows overwrite.
            let which = b.argmax.map { UnsafeRawPointer($0).assumingMemoryBound(to: CInt.self) }, dy = UnsafePointer(b.dy)
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 64) { spill in
                let spill = spill.baseAddress!
                for c in planes(b, channels) {
                    for oy in 0..<OH {
                        let o = (c * OH + oy) * OW, top = dx + (c * H + 2 * oy) * W
                        let inside = (2 * oy + 1) * W + 32 <= H * W
                        let (upper, lower) = inside ? (top, top + W) : (spill, spill + 32)
                        if let which {
                            pcnn_max_unpool_row16(dy + o, which + o, upper, lower)
                        } else {
                            pcnn_average_unpool_row16(dy + o, scale, upper, lower)
                        }
                        if !inside {
                            top.update(from: spill, count: W)
                            (top + W).update(from: spill + 32, count: W)
                        }
                    }
                }
            }
            return
        }
        for c in planes(b, channels) {
            (dx + c * H * W).update(repeating: 0, count: H * W)
            for oy in 0..<OH {
                for ox in 0..<OW {
                    let o = (c * OH + oy) * OW + ox
                    if isMax {
                        dx[Int(b.argmax![o])] += b.dy[o]
                    } else {
                        let e = b.dy[o] * scale, corner = (c * H + oy * S) * W + ox * S
                        for wy in 0..<Z {
                            for wx in 0..<Z { dx[corner + wy * W + wx] += e }
                        }
                    }
                }
            }
        }
    }

    /// The planes of the channels `channels` in a block of `b.block.samples`.
    @inline(__always) static func planes(_ b: LayerBuffers, _ channels: Range<Int>) -> Range<Int> {
        (channels.lowerBound * b.block.samples)..<(channels.upperBound * b.block.samples)
    }

    /// Max or average pooling 2x2 with stride 2 over inputs of even sides up to 32 wide
    /// (LeNet's): every input value in exactly one window, output rows as single vectors.
    static func pairPooling(_ layer: ArchitectureLayer) -> Bool {
        switch layer.spec {
        case .maxPool(2, 2), .avgPool(2, 2): break
        default: return false
        }
        return layer.input.height == 2 * layer.output.height && layer.input.width == 2 * layer.output.width
            && layer.input.width <= 32
    }

    static func poolWindow(_ layer: ArchitectureLayer) -> (size: Int, stride: Int, isMax: Bool) {
        switch layer.spec {
        case .avgPool(let size, let stride): (size, stride, false)
        case .maxPool(let size, let stride): (size, stride, true)
        default: preconditionFailure()
        }
    }

    static func poolPasses(_ b: LayerBuffers) -> (forward: [LayerPass], backward: [LayerPass]) {
        let C = b.layer.input.channels, plane = b.layer.input.planeSize, block = b.block
        let forward = [
            LayerPass(name: "\(b.layer.name) forward", items: C, replicated: true, writes: b.layer.output.count) { _, channels in
                poolForward(b, channels: channels)
            }
        ]
        let backward =
            b.dx.map { dx in
                [
                    LayerPass(
                        name: "\(b.layer.name) backward", items: C,
                        produced: { [BufferSegment(dx, $0.lowerBound * block.samples * plane, $0.count * block.samples * plane)] }
                    ) { _, channels in poolBackward(b, channels: channels) }
                ]
            } ?? []
        return (forward, backward)
    }
}
