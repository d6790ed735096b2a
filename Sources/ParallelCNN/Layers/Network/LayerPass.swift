/// A piece of a buffer: `count` floats from `base + offset`. The MPI layer strategy exchanges
/// the pieces each rank produced.
struct BufferSegment {
    let base: UnsafeMutablePointer<Float>
    let offset: Int
    let count: Int

    init(_ base: UnsafeMutablePointer<Float>, _ offset: Int, _ count: Int) {
        self.base = base
        self.offset = offset
        self.count = count
    }

    init(base: UnsafeMutablePointer<Float>, offset: Int, count: Int) {
        self.init(base, offset, count)
    }
}

/// One step of a layer's forward or backward pass over one sample, cut into `items` (filters,
/// channels, outputs, chunks) that may run in any order and in parallel: `run(p, items)`
/// computes the items `items` under parameters `p`, each written by exactly one item.
///
/// Engines compose passes: `sequential` runs each over all its items, the `layer` strategy of
/// `threads` splits each across its threads, and that of `mpi` across ranks, after which every
/// rank sends the buffers it `produced`. A `replicated` pass is cheap enough that every rank runs
/// all of it rather than exchanging its result.
struct LayerPass {
    let name: String
    let items: Int
    let replicated: Bool
    let produced: ((Range<Int>) -> [BufferSegment])?
    /// Floats the whole pass writes: what other threads read after the `threads` layer strategy
    /// splits it (the cost model's cross-core traffic).
    let writtenFloats: Int
    let run: (UnsafePointer<Float>, Range<Int>) -> Void

    /// `writes`: the floats a replicated pass writes (a pass that is not replicated writes what
    /// it `produced`).
    init(
        name: String, items: Int, replicated: Bool = false, writes: Int = 0, produced: ((Range<Int>) -> [BufferSegment])? = nil,
        run: @escaping (UnsafePointer<Float>, Range<Int>) -> Void
    ) {
        precondition(replicated || produced != nil, "\(name): a pass that is not replicated names what it produces")
        self.name = name
        self.items = items
        self.replicated = replicated
        self.produced = produced
        writtenFloats = produced.map { $0(0..<items).reduce(0) { $0 + $1.count } } ?? writes
        self.run = run
    }
}

/// The number of samples a `CPUNetwork` is running now (1...its block capacity): every pass of
/// its layers reads it, so the same passes serve a block of any size.
final class SampleBlock {
    let capacity: Int
    var samples = 1

    init(capacity: Int) { self.capacity = capacity }
}

/// The buffers one layer's passes read and write in a `CPUNetwork`, for a block of `n`
/// samples (`block.samples`).
///
/// Layouts: an image-shaped tensor is planar, `[C][n][H·W]` (channel, then sample), so a
/// convolution over the whole block is one matrix product whose columns are `n·H·W` positions;
/// a dense layer's output is `[O][n]` (the same rule with H·W = 1), and its input, gathered
/// sample-major, `[n][I]`. With one sample every layout is the sample's own.
struct LayerBuffers {
    let layer: ArchitectureLayer
    let block: SampleBlock
    /// The layer's input (the image, or the previous layer's output) and output.
    let x: UnsafeMutablePointer<Float>
    let y: UnsafeMutablePointer<Float>
    /// The error (ascent direction) at the output, and at the input (nil for the first layer).
    let dy: UnsafeMutablePointer<Float>
    let dx: UnsafeMutablePointer<Float>?
    /// The block's gradient sum, canonical order.
    let grad: UnsafeMutablePointer<Float>
    /// Convolution: the unfolded input and its error, `[C·K·K][n·OH·OW]` (for one that reads
    /// its input in place, `col` holds a sample's errors instead: `convBackwardInPlace`);
    /// subsampling: its unfolded windows, `[K·K][C·n·OH·OW]`.
    let col: UnsafeMutablePointer<Float>?
    let dCol: UnsafeMutablePointer<Float>?
    /// Convolution with stride 1 and padding: the input with its zero border, `[C][n][H+2P][W+2P]`
    /// (the border written once, at allocation), so that every tap row is one plain copy.
    let padded: UnsafeMutablePointer<Float>?
    /// Subsampling: where each output's window starts, then each input's window
    /// (`CPULayers.subsampleIndices`).
    let windowStarts: UnsafePointer<Int32>?
    /// Max pooling: the input index of each output's maximum.
    let argmax: UnsafeMutablePointer<Int32>?
    /// Dense, in a network of more than one sample: the input gathered `[n][I]`, and its error
    /// before it is scattered back to `dx`.
    let xFlat: UnsafeMutablePointer<Float>?
    let dxFlat: UnsafeMutablePointer<Float>?
}
