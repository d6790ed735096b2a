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
