import Foundation
import Synchronization

/// A CUDA device: its primary context, the default stream, one module compiled by NVRTC to a
/// CUBIN for the device's own architecture (a PTX from an NVRTC newer than the driver would be
/// refused by the driver).
public final class CUDADevice: ComputeDevice {
    public let backend = "cuda"
    public let name: String
    public var timeline: DeviceTimeline?
    private let api: CUDADriverAPI
    private let device: Int32
    private let context: UnsafeMutableRawPointer
    public let architecture: String
    /// What NVRTC compiles for this device (its own CUBIN, a compatible one, or PTX).
    public let target: NVRTC.Target
    private var module: UnsafeMutableRawPointer?
    private var functions: [UnsafeMutableRawPointer] = []
    private var functionNames: [String: UInt64] = [:]
    private var sizes: [UInt64: Int] = [:]
    /// ptxas's report for the loaded module.
    public private(set) var compileLog = ""

    /// Whether a CUDA driver with a device and NVRTC are present; if not, the one-line remedy.
    public static func availability() -> EngineAvailability {
        switch CUDADriverAPI.shared {
        case .failure: return .unavailable(remedy: "no NVIDIA driver (libcuda.so.1 not found): " + CUDADriverAPI.remedy)
        case .success(let api):
            let count: Int
            do {
                count = try api.devices().count
                if count == 0 { return .unavailable(remedy: "the CUDA driver reports no device: " + CUDADriverAPI.remedy) }
            } catch { return .unavailable(remedy: "\(error)") }
            if case .failure = NVRTC.shared { return .unavailable(remedy: "NVRTC not found. " + NVRTC.remedy) }
            return .available(detail: "\(count) device(s)")
        }
    }

    /// The driver version and its devices, for `pcnn devices`.
    public static func driverDescription() throws -> (version: String, devices: [String]) {
        let api = try CUDADriverAPI.shared.get()
        let devices = try api.devices()
        return (
            try api.version(),
            devices.map {
                "\($0.name) — \($0.architecture), \($0.multiprocessors) SMs, \($0.memory >> 20) MiB"
            }
        )
    }

    public init(index: Int = 0) throws {
        let api = try CUDADriverAPI.shared.get()
        let all = try api.devices()
        guard !all.isEmpty else {
            throw DeviceError.noDevice(backend: "cuda", detail: "the CUDA driver reports no device. " + CUDADriverAPI.remedy)
        }
        guard all.indices.contains(index) else {
            throw DeviceError.noDevice(
                backend: "cuda", detail: "no device \(index): this machine has \(all.count) CUDA device(s) (0..<\(all.count))")
        }
        let info = all[index]
        var context: UnsafeMutableRawPointer?
        try api.check(api.primaryCtxRetain(&context, info.ordinal), "cuDevicePrimaryCtxRetain")
        guard let context else {
            throw DeviceError.driver(backend: "cuda", call: "cuDevicePrimaryCtxRetain", code: 0, message: "null context")
        }
        try api.check(api.ctxSetCurrent(context), "cuCtxSetCurrent")
        self.api = api
        self.device = info.ordinal
        self.context = context
        architecture = info.architecture
        target = try NVRTC.shared.get().target(forDevice: info.capability)
        name = "\(info.name), \(info.architecture)" + (target == .cubin(info.architecture) ? "" : " (kernels built as \(target.option))")
    }

    deinit {
        _ = api.ctxSetCurrent(context)
        _ = api.ctxSynchronize()
        for (pointer, _) in sizes { _ = api.memFree(pointer) }
        if let module { _ = api.moduleUnload(module) }
        _ = api.primaryCtxRelease(device)
    }

    /// The engine may be driven from another thread than the one that opened the device.
    private func makeCurrent() throws { try api.check(api.ctxSetCurrent(context), "cuCtxSetCurrent") }

    public func allocate(bytes: Int) throws -> DeviceBuffer {
        try makeCurrent()
        var pointer: UInt64 = 0
        try api.check(api.memAlloc(&pointer, max(bytes, 4)), "cuMemAlloc_v2(\(bytes) bytes)")
        sizes[pointer] = bytes
        return DeviceBuffer(handle: pointer, bytes: bytes)
    }

    public func free(_ buffer: DeviceBuffer) {
        guard sizes.removeValue(forKey: buffer.handle) != nil else { return }
        // cuMemFree acts on the current context, which another device may have made current.
        _ = try? makeCurrent()
        _ = api.memFree(buffer.handle)
    }

    public func write(_ buffer: DeviceBuffer, offset: Int, from source: UnsafeRawBufferPointer) throws {
        guard source.count > 0 else { return }
        try makeCurrent()
        try api.check(api.memcpyHtoD(buffer.handle + UInt64(offset), source.baseAddress, source.count), "cuMemcpyHtoD_v2")
    }

    public func read(_ buffer: DeviceBuffer, offset: Int, into destination: UnsafeMutableRawBufferPointer) throws {
        guard destination.count > 0 else { return }
        try makeCurrent()
        try api.check(api.memcpyDtoH(destination.baseAddress, buffer.handle + UInt64(offset), destination.count), "cuMemcpyDtoH_v2")
    }

    /// CUBINs compiled in this process, by architecture, defines and source: NVRTC takes about
    /// 2 s for these kernels, and a run may open several engines (bench, test after train).
    private static let compiled = Mutex<[String: (cubin: [UInt8], log: String)]>([:])

    public func compile(source: String, defines: [String: String]) throws {
        let key =
            target.option + "\u{0}" + defines.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            + "\u{0}" + source
        let (cubin, log): ([UInt8], String)
        if let hit = Self.compiled.withLock({ $0[key] }) {
            (cubin, log) = hit
        } else {
            (cubin, log) = try NVRTC.shared.get().compile(source: source, architecture: target.option, defines: defines)
            Self.compiled.withLock { $0[key] = (cubin, log) }
        }
        try makeCurrent()
        var loaded: UnsafeMutableRawPointer?
        // PTX is loaded as NUL-terminated text, which the driver compiles for the device.
        var image = cubin
        if case .ptx = target, image.last != 0 { image.append(0) }
        try image.withUnsafeBytes { try api.check(api.moduleLoadData(&loaded, $0.baseAddress!), "cuModuleLoadData(\(target.option))") }
        if let module { _ = api.moduleUnload(module) }
        module = loaded
        functions = []
        functionNames = [:]
        compileLog = log
    }

    public func kernel(_ name: String) throws -> DeviceKernel {
        if let h = functionNames[name] { return DeviceKernel(name: name, handle: h) }
        guard let module else { throw DeviceError.usage("cuda: kernel \(name) requested before compile") }
        try makeCurrent()
        var function: UnsafeMutableRawPointer?
        try api.check(api.moduleGetFunction(&function, module, name), "cuModuleGetFunction(\(name))")
        functions.append(function!)
        let h = UInt64(functions.count - 1)
        functionNames[name] = h
        return DeviceKernel(name: name, handle: h)
    }

    public private(set) var launches = 0

    public func launch(_ kernel: DeviceKernel, groups: Int, groupSize: Int, arguments: [KernelArgument]) throws {
        launches += 1
        try makeCurrent()
        // kernelParams: one pointer per argument, pointing at the argument's value.
        let storage = UnsafeMutableRawPointer.allocate(byteCount: 8 * max(arguments.count, 1), alignment: 8)
        defer { storage.deallocate() }
        var pointers = [UnsafeMutableRawPointer?](repeating: nil, count: arguments.count)
        for (i, argument) in arguments.enumerated() {
            let slot = storage + 8 * i
            switch argument {
            case .buffer(let b): slot.storeBytes(of: b.handle, as: UInt64.self)
            case .int32(let v): slot.storeBytes(of: v, as: Int32.self)
            case .float(let v): slot.storeBytes(of: v, as: Float.self)
            }
            pointers[i] = slot
        }
        let function = functions[Int(kernel.handle)]
        var start: UnsafeMutableRawPointer?, end: UnsafeMutableRawPointer?
        if timeline != nil {
            try api.check(api.eventCreate(&start, 0), "cuEventCreate")
            try api.check(api.eventCreate(&end, 0), "cuEventCreate")
            try api.check(api.eventRecord(start, nil), "cuEventRecord")
        }
        try pointers.withUnsafeMutableBufferPointer { p in
            try api.check(
                api.launchKernel(function, UInt32(groups), 1, 1, UInt32(groupSize), 1, 1, 0, nil, p.baseAddress, nil),
                "cuLaunchKernel(\(kernel.name))")
        }
        if let timeline {
            try api.check(api.eventRecord(end, nil), "cuEventRecord")
            try api.check(api.eventSynchronize(end), "cuEventSynchronize")
            var ms: Float = 0
            try api.check(api.eventElapsedTime(&ms, start, end), "cuEventElapsedTime")
            _ = api.eventDestroy(start)
            _ = api.eventDestroy(end)
            timeline.add(kernel.name, seconds: Double(ms) / 1000)
        }
    }

    public func synchronize() throws {
        try makeCurrent()
        try api.check(api.ctxSynchronize(), "cuCtxSynchronize")
    }
}
