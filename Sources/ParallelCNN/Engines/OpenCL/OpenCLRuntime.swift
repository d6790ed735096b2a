#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// OpenCL 1.2 through the ICD loader, loaded at run time with `dlopen` (no OpenCL headers or
/// libraries at build time). Only the calls the device engines use are bound.
final class OpenCLAPI: @unchecked Sendable {
    typealias Handle = OpaquePointer?
    typealias GetPlatformIDs = @convention(c) (UInt32, UnsafeMutablePointer<Handle>?, UnsafeMutablePointer<UInt32>?) -> Int32
    typealias GetInfo = @convention(c) (Handle, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
    typealias GetDeviceIDs = @convention(c) (Handle, UInt64, UInt32, UnsafeMutablePointer<Handle>?, UnsafeMutablePointer<UInt32>?) -> Int32
    typealias CreateContext =
        @convention(c) (
            UnsafePointer<Int>?, UInt32, UnsafePointer<Handle>?, OpaquePointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?
        ) -> Handle
    typealias CreateQueue = @convention(c) (Handle, Handle, UInt64, UnsafeMutablePointer<Int32>?) -> Handle
    typealias CreateBuffer = @convention(c) (Handle, UInt64, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> Handle
    typealias EnqueueWrite =
        @convention(c) (Handle, Handle, UInt32, Int, Int, UnsafeRawPointer?, UInt32, UnsafePointer<Handle>?, UnsafeMutablePointer<Handle>?)
        -> Int32
    typealias EnqueueRead =
        @convention(c) (
            Handle, Handle, UInt32, Int, Int, UnsafeMutableRawPointer?, UInt32, UnsafePointer<Handle>?, UnsafeMutablePointer<Handle>?
        ) -> Int32
    typealias CreateProgram =
        @convention(c) (Handle, UInt32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int>?, UnsafeMutablePointer<Int32>?) -> Handle
    typealias BuildProgram =
        @convention(c) (Handle, UInt32, UnsafePointer<Handle>?, UnsafePointer<CChar>?, OpaquePointer?, UnsafeMutableRawPointer?) -> Int32
    typealias GetBuildInfo = @convention(c) (Handle, Handle, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
    typealias CreateKernel = @convention(c) (Handle, UnsafePointer<CChar>?, UnsafeMutablePointer<Int32>?) -> Handle
    typealias SetKernelArg = @convention(c) (Handle, UInt32, Int, UnsafeRawPointer?) -> Int32
    typealias EnqueueNDRange =
        @convention(c) (
            Handle, Handle, UInt32, UnsafePointer<Int>?, UnsafePointer<Int>?, UnsafePointer<Int>?, UInt32, UnsafePointer<Handle>?,
            UnsafeMutablePointer<Handle>?
        ) -> Int32
    typealias Release = @convention(c) (Handle) -> Int32

    let getPlatformIDs: GetPlatformIDs
    let getPlatformInfo: GetInfo
    let getDeviceIDs: GetDeviceIDs
    let getDeviceInfo: GetInfo
    let createContext: CreateContext
    let createQueue: CreateQueue
    let createBuffer: CreateBuffer
    let enqueueWrite: EnqueueWrite
    let enqueueRead: EnqueueRead
    let createProgram: CreateProgram
    let buildProgram: BuildProgram
    let getBuildInfo: GetBuildInfo
    let createKernel: CreateKernel
    let setKernelArg: SetKernelArg
    let enqueueNDRange: EnqueueNDRange
    let finish: Release
    let getEventProfilingInfo: GetInfo
    let releaseEvent: Release
    let releaseMemObject: Release
    let releaseKernel: Release
    let releaseProgram: Release
    let releaseQueue: Release
    let releaseContext: Release

    static let library = "libOpenCL.so.1"
    static let remedy = """
        Install an OpenCL ICD loader and a driver; with no GPU, PoCL runs OpenCL on the CPU: \
        `apt-get install ocl-icd-libopencl1 pocl-opencl-icd` (`scripts/setup` does it with PCNN_WITH_GPU=1)
        """

    /// The loaded API, or why it cannot be loaded (cached: the loader is opened once per process).
    static let shared: Result<OpenCLAPI, DeviceError> = {
        let (handle, errors) = SharedLibrary.open([library, "libOpenCL.so", "/System/Library/Frameworks/OpenCL.framework/OpenCL"])
        guard let handle else { return .failure(.libraryNotFound(library: library, tried: errors, remedy: remedy)) }
        do { return .success(try OpenCLAPI(handle)) } catch let e as DeviceError { return .failure(e) } catch {
            return .failure(.usage("\(error)"))
        }
    }()

    private init(_ h: UnsafeMutableRawPointer) throws {
        func f<T>(_ name: String, _ t: T.Type) throws -> T { try SharedLibrary.symbol(h, name, library: Self.library, as: t) }
        getPlatformIDs = try f("clGetPlatformIDs", GetPlatformIDs.self)
        getPlatformInfo = try f("clGetPlatformInfo", GetInfo.self)
        getDeviceIDs = try f("clGetDeviceIDs", GetDeviceIDs.self)
        getDeviceInfo = try f("clGetDeviceInfo", GetInfo.self)
        createContext = try f("clCreateContext", CreateContext.self)
        createQueue = try f("clCreateCommandQueue", CreateQueue.self)
        createBuffer = try f("clCreateBuffer", CreateBuffer.self)
        enqueueWrite = try f("clEnqueueWriteBuffer", EnqueueWrite.self)
        enqueueRead = try f("clEnqueueReadBuffer", EnqueueRead.self)
        createProgram = try f("clCreateProgramWithSource", CreateProgram.self)
        buildProgram = try f("clBuildProgram", BuildProgram.self)
        getBuildInfo = try f("clGetProgramBuildInfo", GetBuildInfo.self)
        createKernel = try f("clCreateKernel", CreateKernel.self)
        setKernelArg = try f("clSetKernelArg", SetKernelArg.self)
        enqueueNDRange = try f("clEnqueueNDRangeKernel", EnqueueNDRange.self)
        finish = try f("clFinish", Release.self)
        getEventProfilingInfo = try f("clGetEventProfilingInfo", GetInfo.self)
        releaseEvent = try f("clReleaseEvent", Release.self)
        releaseMemObject = try f("clReleaseMemObject", Release.self)
        releaseKernel = try f("clReleaseKernel", Release.self)
        releaseProgram = try f("clReleaseProgram", Release.self)
        releaseQueue = try f("clReleaseCommandQueue", Release.self)
        releaseContext = try f("clReleaseContext", Release.self)
    }

    // MARK: Errors

    /// The OpenCL 1.2 name of an error code (OpenCL has no error-string call; the name is its text).
    static func errorName(_ code: Int32) -> String {
        let names: [Int32: String] = [
            -1: "CL_DEVICE_NOT_FOUND", -2: "CL_DEVICE_NOT_AVAILABLE", -3: "CL_COMPILER_NOT_AVAILABLE",
            -4: "CL_MEM_OBJECT_ALLOCATION_FAILURE", -5: "CL_OUT_OF_RESOURCES", -6: "CL_OUT_OF_HOST_MEMORY",
            -7: "CL_PROFILING_INFO_NOT_AVAILABLE", -11: "CL_BUILD_PROGRAM_FAILURE", -14: "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST",
            -30: "CL_INVALID_VALUE", -32: "CL_INVALID_PLATFORM", -33: "CL_INVALID_DEVICE", -34: "CL_INVALID_CONTEXT",
            -36: "CL_INVALID_COMMAND_QUEUE", -38: "CL_INVALID_MEM_OBJECT", -43: "CL_INVALID_BUILD_OPTIONS",
            -44: "CL_INVALID_PROGRAM", -45: "CL_INVALID_PROGRAM_EXECUTABLE", -46: "CL_INVALID_KERNEL_NAME",
            -48: "CL_INVALID_KERNEL", -49: "CL_INVALID_ARG_INDEX", -50: "CL_INVALID_ARG_VALUE", -51: "CL_INVALID_ARG_SIZE",
            -52: "CL_INVALID_KERNEL_ARGS", -53: "CL_INVALID_WORK_DIMENSION", -54: "CL_INVALID_WORK_GROUP_SIZE",
            -55: "CL_INVALID_WORK_ITEM_SIZE", -58: "CL_INVALID_EVENT", -61: "CL_INVALID_BUFFER_SIZE",
            -1001: "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL driver is installed for the ICD loader)"
        ]
        return names[code] ?? "unknown OpenCL error"
    }

    func check(_ code: Int32, _ call: String) throws {
        guard code == 0 else { throw DeviceError.driver(backend: "opencl", call: call, code: Int(code), message: Self.errorName(code)) }
    }

    // MARK: Discovery

    struct DeviceInfo {
        let platform: String
        let name: String
        let version: String
        let cVersion: String
        let computeUnits: Int
        let localMemory: Int
        let globalMemory: Int
        let handle: OpaquePointer
    }

    func string(
        _ get: (Handle, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32, _ object: Handle, _ param: UInt32
    ) -> String {
        var size = 0
        guard get(object, param, 0, nil, &size) == 0, size > 0 else { return "" }
        var bytes = [CChar](repeating: 0, count: size + 1)
        guard get(object, param, size, &bytes, nil) == 0 else { return "" }
        return String(nulTerminated: bytes).trimmingCharacters(in: " \0")
    }

    func integer<T: FixedWidthInteger>(_ object: Handle, _ param: UInt32, _ type: T.Type) -> T {
        var v: T = 0
        _ = getDeviceInfo(object, param, MemoryLayout<T>.size, &v, nil)
        return v
    }

    /// Every device of every platform, in platform order (the `--device N` numbering).
    func devices() throws -> [DeviceInfo] {
        var count: UInt32 = 0
        let status = getPlatformIDs(0, nil, &count)
        if status == -1001 || count == 0 { return [] }
        try check(status, "clGetPlatformIDs")
        var platforms = [Handle](repeating: nil, count: Int(count))
        try check(getPlatformIDs(count, &platforms, nil), "clGetPlatformIDs")
        var result: [DeviceInfo] = []
        for platform in platforms {
            let platformName = string(getPlatformInfo, platform, 0x0902) + " (" + string(getPlatformInfo, platform, 0x0901) + ")"
            var n: UInt32 = 0
            guard getDeviceIDs(platform, 0xFFFF_FFFF, 0, nil, &n) == 0, n > 0 else { continue }
            var ids = [Handle](repeating: nil, count: Int(n))
            try check(getDeviceIDs(platform, 0xFFFF_FFFF, n, &ids, nil), "clGetDeviceIDs")
            for id in ids {
                guard let id else { continue }
                result.append(
                    DeviceInfo(
                        platform: platformName, name: string(getDeviceInfo, id, 0x102B), version: string(getDeviceInfo, id, 0x102F),
                        cVersion: string(getDeviceInfo, id, 0x103D), computeUnits: Int(integer(id, 0x1002, UInt32.self)),
                        localMemory: Int(integer(id, 0x1023, UInt64.self)), globalMemory: Int(integer(id, 0x101F, UInt64.self)),
                        handle: id))
            }
        }
        return result
    }
}

private extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}

/// An OpenCL device with one context, one in-order queue and one program.
public final class OpenCLDevice: ComputeDevice {
    public let backend = "opencl"
    public let name: String
    public var timeline: DeviceTimeline?
    private let api: OpenCLAPI
    private let device: OpaquePointer
    private let context: OpaquePointer
    private let queue: OpaquePointer
    private var program: OpaquePointer?
    private var kernels: [OpaquePointer] = []
    private var buffers: [UInt64: OpaquePointer] = [:]
    private var nextBuffer: UInt64 = 1

    /// Whether an OpenCL driver with at least one device is installed, and if not, how to get one.
    public static func availability() -> EngineAvailability {
        switch OpenCLAPI.shared {
        case .failure(let error): return .unavailable(remedy: error.description)
        case .success(let api):
            let found = (try? api.devices()) ?? []
            return found.isEmpty
                ? .unavailable(remedy: "the OpenCL loader found no platform or device. " + OpenCLAPI.remedy)
                : .available(detail: "see pcnn devices")
        }
    }

    /// Names of the OpenCL devices, in `--device` order, for `pcnn devices`.
    public static func deviceDescriptions() throws -> [String] {
        let api = try OpenCLAPI.shared.get()
        return try api.devices().map {
            "\($0.name) — \($0.platform), \($0.version), \($0.cVersion), \($0.computeUnits) compute units, "
                + "\($0.localMemory / 1024) KiB local, \($0.globalMemory >> 20) MiB global"
        }
    }

    /// Opens device `index` (counting the devices of all platforms in order).
    public init(index: Int = 0) throws {
        let api = try OpenCLAPI.shared.get()
        let all = try api.devices()
        guard !all.isEmpty else { throw DeviceError.noDevice(backend: "opencl", detail: "no OpenCL device found. " + OpenCLAPI.remedy) }
        guard all.indices.contains(index) else {
            throw DeviceError.noDevice(
                backend: "opencl", detail: "no device \(index): this machine has \(all.count) OpenCL device(s) (0..<\(all.count))")
        }
        let info = all[index]
        self.api = api
        device = info.handle
        name = "\(info.name) (\(info.platform))"
        var status: Int32 = 0
        var ids: [OpaquePointer?] = [info.handle]
        guard let context = api.createContext(nil, 1, &ids, nil, nil, &status) else {
            try api.check(status, "clCreateContext")
            throw DeviceError.driver(backend: "opencl", call: "clCreateContext", code: Int(status), message: "no context")
        }
        self.context = context
        // Profiling lets the bench read per-kernel device times from events.
        guard let queue = api.createQueue(context, info.handle, 2, &status) else {
            _ = api.releaseContext(context)
            try api.check(status, "clCreateCommandQueue")
            throw DeviceError.driver(backend: "opencl", call: "clCreateCommandQueue", code: Int(status), message: "no queue")
        }
        self.queue = queue
    }

    deinit {
        _ = api.finish(queue)
        for k in kernels { _ = api.releaseKernel(k) }
        if let program { _ = api.releaseProgram(program) }
        for b in buffers.values { _ = api.releaseMemObject(b) }
        _ = api.releaseQueue(queue)
        _ = api.releaseContext(context)
    }

    public func allocate(bytes: Int) throws -> DeviceBuffer {
        var status: Int32 = 0
        let mem = api.createBuffer(context, 1 /* CL_MEM_READ_WRITE */, max(bytes, 4), nil, &status)
        try api.check(status, "clCreateBuffer(\(bytes) bytes)")
        guard let mem else { throw DeviceError.driver(backend: backend, call: "clCreateBuffer", code: 0, message: "null buffer") }
        let id = nextBuffer
        nextBuffer += 1
        buffers[id] = mem
        return DeviceBuffer(handle: id, bytes: bytes)
    }

    public func free(_ buffer: DeviceBuffer) {
        if let mem = buffers.removeValue(forKey: buffer.handle) { _ = api.releaseMemObject(mem) }
    }

    private func mem(_ buffer: DeviceBuffer) throws -> OpaquePointer {
        guard let m = buffers[buffer.handle] else { throw DeviceError.usage("opencl: buffer \(buffer.handle) was freed") }
        return m
    }

    public func write(_ buffer: DeviceBuffer, offset: Int, from source: UnsafeRawBufferPointer) throws {
        guard source.count > 0 else { return }
        try api.check(
            api.enqueueWrite(queue, try mem(buffer), 1, offset, source.count, source.baseAddress, 0, nil, nil), "clEnqueueWriteBuffer")
    }

    public func read(_ buffer: DeviceBuffer, offset: Int, into destination: UnsafeMutableRawBufferPointer) throws {
        guard destination.count > 0 else { return }
        try api.check(
            api.enqueueRead(queue, try mem(buffer), 1, offset, destination.count, destination.baseAddress, 0, nil, nil),
            "clEnqueueReadBuffer")
    }

    public func compile(source: String, defines: [String: String]) throws {
        var status: Int32 = 0
        let created: OpaquePointer? = source.withCString { text in
            var strings: [UnsafePointer<CChar>?] = [text]
            return api.createProgram(context, 1, &strings, nil, &status)
        }
        try api.check(status, "clCreateProgramWithSource")
        guard let created else {
            throw DeviceError.driver(backend: backend, call: "clCreateProgramWithSource", code: 0, message: "null program")
        }
        let options =
            (["-cl-fp32-correctly-rounded-divide-sqrt", "-cl-std=CL1.2"]
            + defines.sorted { $0.key < $1.key }.map { "-D\($0.key)=\($0.value)" }).joined(separator: " ")
        var ids: [OpaquePointer?] = [device]
        let built = api.buildProgram(created, 1, &ids, options, nil, nil)
        if built != 0 {
            let log = api.string(
                { p, param, size, value, ret in self.api.getBuildInfo(p, self.device, param, size, value, ret) }, created, 0x1183)
            _ = api.releaseProgram(created)
            if built == -11 { throw DeviceError.compilation(backend: backend, log: log) }
            try api.check(built, "clBuildProgram")
        }
        for k in kernels { _ = api.releaseKernel(k) }
        kernels = []
        kernelNames = [:]
        if let program { _ = api.releaseProgram(program) }
        program = created
    }

    private var kernelNames: [String: UInt64] = [:]

    public func kernel(_ name: String) throws -> DeviceKernel {
        if let h = kernelNames[name] { return DeviceKernel(name: name, handle: h) }
        guard let program else { throw DeviceError.usage("opencl: kernel \(name) requested before compile") }
        var status: Int32 = 0
        let k = api.createKernel(program, name, &status)
        try api.check(status, "clCreateKernel(\(name))")
        guard let k else { throw DeviceError.driver(backend: backend, call: "clCreateKernel(\(name))", code: 0, message: "null kernel") }
        kernels.append(k)
        let h = UInt64(kernels.count - 1)
        kernelNames[name] = h
        return DeviceKernel(name: name, handle: h)
    }

    public func launch(_ kernel: DeviceKernel, groups: Int, groupSize: Int, arguments: [KernelArgument]) throws {
        let k = kernels[Int(kernel.handle)]
        for (i, argument) in arguments.enumerated() {
            let status: Int32
            switch argument {
            case .buffer(let b):
                var m: OpaquePointer? = try mem(b)
                status = api.setKernelArg(k, UInt32(i), MemoryLayout<OpaquePointer?>.size, &m)
            case .int32(var v): status = api.setKernelArg(k, UInt32(i), 4, &v)
            case .float(var v): status = api.setKernelArg(k, UInt32(i), 4, &v)
            }
            try api.check(status, "clSetKernelArg(\(kernel.name), \(i))")
        }
        var global = groups * groupSize
        var local = groupSize
        if let timeline {
            var event: OpaquePointer?
            try api.check(api.enqueueNDRange(queue, k, 1, nil, &global, &local, 0, nil, &event), "clEnqueueNDRangeKernel(\(kernel.name))")
            try api.check(api.finish(queue), "clFinish")
            var start: UInt64 = 0, end: UInt64 = 0
            try api.check(api.getEventProfilingInfo(event, 0x1282, 8, &start, nil), "clGetEventProfilingInfo")
            try api.check(api.getEventProfilingInfo(event, 0x1283, 8, &end, nil), "clGetEventProfilingInfo")
            _ = api.releaseEvent(event)
            timeline.add(kernel.name, seconds: Double(end &- start) / 1e9)
        } else {
            try api.check(api.enqueueNDRange(queue, k, 1, nil, &global, &local, 0, nil, nil), "clEnqueueNDRangeKernel(\(kernel.name))")
        }
    }

    public func synchronize() throws {
        try api.check(api.finish(queue), "clFinish")
    }
}
