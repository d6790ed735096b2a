#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a device backend could not be loaded, could not compile, or failed while running.
/// Driver and compiler texts are carried verbatim.
public enum DeviceError: Error, CustomStringConvertible, Equatable {
    /// No shared library of the backend could be loaded; `tried` lists what `dlopen` said.
    case libraryNotFound(library: String, tried: [String], remedy: String)
    /// The library lacks a function this program calls.
    case missingSymbol(library: String, symbol: String)
    /// A driver call returned an error: the call, its numeric code, and the driver's own name and text for it.
    case driver(backend: String, call: String, code: Int, message: String)
    /// The kernel compiler rejected the source; `log` is its complete log.
    case compilation(backend: String, log: String)
    /// The backend is present but has no usable device (or not the one asked for).
    case noDevice(backend: String, detail: String)
    /// A runtime call made out of order (a kernel before its program was compiled).
    case usage(String)

    public var description: String {
        switch self {
        case .libraryNotFound(let library, let tried, let remedy):
            "\(library) not found (\(tried.joined(separator: "; "))). \(remedy)"
        case .missingSymbol(let library, let symbol): "\(library) has no function \(symbol)"
        case .driver(let backend, let call, let code, let message): "\(backend): \(call) failed (\(code)): \(message)"
        case .compilation(let backend, let log): "\(backend) kernel compilation failed:\n\(log)"
        case .noDevice(let backend, let detail): "\(backend): \(detail)"
        case .usage(let text): text
        }
    }
}

/// A device memory allocation (an OpenCL `cl_mem` or a CUDA device pointer), opaque to engines.
public struct DeviceBuffer: Sendable, Equatable {
    public let handle: UInt64
    public let bytes: Int
}

/// One kernel argument, by value.
public enum KernelArgument {
    case buffer(DeviceBuffer)
    case int32(Int32)
    case float(Float)
}

/// A compiled kernel function of a backend's program, by name.
public struct DeviceKernel: Sendable, Equatable {
    public let name: String
    let handle: UInt64
}

/// The operations a device engine needs from a backend: memory, one compiled program, launches
/// on one in-order queue, and device-side timing. Calls are asynchronous unless they return data.
public protocol ComputeDevice: AnyObject {
    /// "opencl" or "cuda".
    var backend: String { get }
    /// The device's name and version, for reports.
    var name: String { get }
    func allocate(bytes: Int) throws -> DeviceBuffer
    func free(_ buffer: DeviceBuffer)
    /// Copies host bytes into the buffer at `offset` (waits until the host memory may be reused).
    func write(_ buffer: DeviceBuffer, offset: Int, from source: UnsafeRawBufferPointer) throws
    /// Copies buffer bytes to the host after all queued work (blocking).
    func read(_ buffer: DeviceBuffer, offset: Int, into destination: UnsafeMutableRawBufferPointer) throws
    /// Compiles `source` (the kernel files with the prelude) with `defines`; replaces any earlier program.
    func compile(source: String, defines: [String: String]) throws
    func kernel(_ name: String) throws -> DeviceKernel
    /// Queues `kernel` over `groups` work-groups of `groupSize` work-items.
    func launch(_ kernel: DeviceKernel, groups: Int, groupSize: Int, arguments: [KernelArgument]) throws
    /// Waits for all queued work.
    func synchronize() throws
    /// Kernels launched since the device was opened (the bench reports them per epoch).
    var launches: Int { get }
    /// Starts recording device time in `timeline` (one device timestamp per launch), or stops it (nil).
    var timeline: DeviceTimeline? { get set }
}

/// Device-measured kernel times, summed per kernel name (seconds).
public final class DeviceTimeline {
    public private(set) var seconds: [String: Double] = [:]
    public private(set) var launches: [String: Int] = [:]
    public init() {}
    public func add(_ name: String, seconds s: Double) {
        seconds[name, default: 0] += s
        launches[name, default: 0] += 1
    }
}

extension ComputeDevice {
    func write<T>(_ buffer: DeviceBuffer, offset: Int = 0, array: [T]) throws {
        try array.withUnsafeBytes { try write(buffer, offset: offset * MemoryLayout<T>.stride, from: $0) }
    }

    func read<T>(_ buffer: DeviceBuffer, offset: Int = 0, count: Int, as: T.Type, zero: T) throws -> [T] {
        var out = [T](repeating: zero, count: count)
        try out.withUnsafeMutableBytes { try read(buffer, offset: offset * MemoryLayout<T>.stride, into: $0) }
        return out
    }
}

/// A device engine's parameters and optimizer buffers (velocity or Adam's first moment, Adam's
/// second moment), with which of them hold state so far.
final class DeviceParameterBuffers {
    let device: any ComputeDevice
    let count: Int
    let params, velocity, secondMoment: DeviceBuffer
    private(set) var hasVelocity = false, hasSecondMoment = false

    init(device: any ComputeDevice, count: Int) throws {
        self.device = device
        self.count = count
        params = try device.allocate(bytes: count * 4)
        velocity = try device.allocate(bytes: count * 4)
        secondMoment = try device.allocate(bytes: count * 4)
    }

    deinit {
        for b in [params, velocity, secondMoment] { device.free(b) }
    }

    /// Replaces the parameters and the buffers (each `nil` one is zero).
    func load(_ parameters: Parameters, _ state: OptimizerState) throws {
        let zero = [Float](repeating: 0, count: count)
        try device.write(params, array: parameters.values)
        try device.write(velocity, array: state.velocity?.values ?? zero)
        try device.write(secondMoment, array: state.secondMoment?.values ?? zero)
        hasVelocity = state.velocity != nil
        hasSecondMoment = state.secondMoment != nil
    }

    func parameters() throws -> Parameters { Parameters(values: try device.read(params, count: count, as: Float.self, zero: 0)) }

    func optimizerState() throws -> OptimizerState {
        func read(_ buffer: DeviceBuffer) throws -> Parameters {
            Parameters(values: try device.read(buffer, count: count, as: Float.self, zero: 0))
        }
        return OptimizerState(
            velocity: hasVelocity ? try read(velocity) : nil, secondMoment: hasSecondMoment ? try read(secondMoment) : nil)
    }

    /// Zeroes the buffers `rule` needs that hold no state yet.
    func prepare(for rule: UpdateRule) throws {
        let zero = [Float](repeating: 0, count: count)
        if rule.usesVelocity && !hasVelocity { try device.write(velocity, array: zero) }
        if rule.usesSecondMoment && !hasSecondMoment { try device.write(secondMoment, array: zero) }
    }

    /// Records that steps of `rule` have updated the buffers it uses.
    func stepped(with rule: UpdateRule) {
        hasVelocity = rule.usesVelocity
        hasSecondMoment = rule.usesSecondMoment
    }
}

/// A data set's images on a device, as the kernels' `IMAGE_ARGS` take them: its bytes where it
/// has them (4 times smaller; the kernels read them through `Dataset.pixelTable`), else its floats.
struct DeviceImages {
    let buffer: DeviceBuffer
    let fromBytes: Bool

    /// Uploads the images of `data[range]` into a new buffer.
    init(_ data: Dataset, range: Range<Int>, on device: any ComputeDevice) throws {
        let n = data.shape.count
        let bounds = (range.lowerBound * n)..<(range.upperBound * n)
        let buffer: DeviceBuffer
        if let bytes = data.pixelBytes {
            buffer = try device.allocate(bytes: max(bounds.count, 1))
            try bytes[bounds].withUnsafeBytes { try device.write(buffer, offset: 0, from: $0) }
        } else {
            buffer = try device.allocate(bytes: max(bounds.count, 1) * 4)
            try data.images[bounds].withUnsafeBytes { try device.write(buffer, offset: 0, from: $0) }
        }
        self.buffer = buffer
        fromBytes = data.pixelBytes != nil
    }

    /// The four arguments `IMAGE_ARGS`: bytes, floats (one of them `unused`), the pixel table, the flag.
    func arguments(pixelTable: DeviceBuffer, unused: DeviceBuffer) -> [KernelArgument] {
        [.buffer(fromBytes ? buffer : unused), .buffer(fromBytes ? unused : buffer), .buffer(pixelTable), .int32(fromBytes ? 1 : 0)]
    }

    /// A buffer holding `Dataset.pixelTable`, and a 4-byte buffer for the argument not used.
    static func tables(on device: any ComputeDevice) throws -> (pixelTable: DeviceBuffer, unused: DeviceBuffer) {
        let table = try device.allocate(bytes: 256 * 4)
        try device.write(table, array: Dataset.pixelTable)
        return (table, try device.allocate(bytes: 4))
    }
}

/// An epoch's statistics as a device engine reads them back: per-sample losses and
/// misclassified flags stay on the device (indexed by position in the epoch) until asked for,
/// then come back and are added in step order, as a CPU engine adds them.
struct DeviceStatisticsReader {
    /// Statistics of the steps before `end`, already read back.
    private(set) var accumulated = TrainingStatistics()
    private var end = 0
    private var batchSize = 1

    init(start: Int = 0, batchSize: Int = 1) {
        end = start
        self.batchSize = batchSize
    }

    /// Reads the samples from the last read up to `position` (a step boundary or the epoch's end).
    mutating func read(_ device: any ComputeDevice, losses: DeviceBuffer, wrong: DeviceBuffer, upTo position: Int) throws
        -> TrainingStatistics
    {
        guard position > end else { return accumulated }
        let n = position - end
        let loss = try device.read(losses, offset: end, count: n, as: Float.self, zero: 0)
        let flags = try device.read(wrong, offset: end, count: n, as: UInt8.self, zero: 0)
        var k = 0
        while k < n {
            // Steps start at epochStart + j * batchSize, and every read ends on one.
            let stepEnd = min(k + batchSize, n)
            var step = StepStatistics()
            for i in k..<stepEnd {
                step.lossSum += Double(loss[i])
                step.misclassified += Int(flags[i])
            }
            step.samples = stepEnd - k
            accumulated.add(step, number: (end + k) / batchSize)
            k = stepEnd
        }
        end = position
        return accumulated
    }
}

/// Opens a shared library by trying candidate paths in order; returns the handle, or the list
/// of `dlerror` texts of all attempts.
enum SharedLibrary {
    static func open(_ candidates: [String]) -> (handle: UnsafeMutableRawPointer?, errors: [String]) {
        var errors: [String] = []
        for path in candidates {
            if let h = dlopen(path, RTLD_NOW | RTLD_LOCAL) { return (h, errors) }
            errors.append(dlerror().map { String(cString: $0) } ?? "\(path): cannot open")
        }
        return (nil, errors)
    }

    /// The function `name` of `handle`, typed as `T` (a `@convention(c)` function type).
    static func symbol<T>(_ handle: UnsafeMutableRawPointer, _ name: String, library: String, as: T.Type) throws -> T {
        guard let s = dlsym(handle, name) else { throw DeviceError.missingSymbol(library: library, symbol: name) }
        return unsafeBitCast(s, to: T.self)
    }
}

extension String {
    /// The text of a NUL-terminated buffer that a C library filled in (a device name, a log).
    init(nulTerminated buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
