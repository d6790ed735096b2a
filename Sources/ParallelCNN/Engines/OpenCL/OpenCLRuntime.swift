#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
                : .available(detail: "\(found.count) device(s)")
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
        guard let queue = api.createQueue(context, info.handle, OpenCLAPI.Constant.queueProfilingEnable, &status) else {
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
        let mem = api.createBuffer(context, OpenCLAPI.Constant.memReadWrite, max(bytes, 4), nil, &status)
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
            api.enqueueWrite(queue, try mem(buffer), OpenCLAPI.Constant.blocking, offset, source.count, source.baseAddress, 0, nil, nil),
            "clEnqueueWriteBuffer")
    }

    public func read(_ buffer: DeviceBuffer, offset: Int, into destination: UnsafeMutableRawBufferPointer) throws {
        guard destination.count > 0 else { return }
        try api.check(
            api.enqueueRead(
                queue, try mem(buffer), OpenCLAPI.Constant.blocking, offset, destination.count, destination.baseAddress, 0, nil, nil),
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
                { p, param, size, value, ret in self.api.getBuildInfo(p, self.device, param, size, value, ret) }, created,
                OpenCLAPI.Constant.programBuildLog)
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

    public private(set) var launches = 0

    public func launch(_ kernel: DeviceKernel, groups: Int, groupSize: Int, arguments: [KernelArgument]) throws {
        launches += 1
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
            try api.check(
                api.getEventProfilingInfo(event, OpenCLAPI.Constant.profilingCommandStart, 8, &start, nil), "clGetEventProfilingInfo")
            try api.check(api.getEventProfilingInfo(event, OpenCLAPI.Constant.profilingCommandEnd, 8, &end, nil), "clGetEventProfilingInfo")
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
