import Foundation
import Synchronization

/// The CUDA driver API from libcuda.so.1, loaded with `dlopen` (no CUDA headers or libraries at
/// build time). `_v2` symbols throughout, as the CUDA headers map them.
final class CUDADriverAPI: @unchecked Sendable {
    typealias Ptr = UnsafeMutableRawPointer?
    typealias Init = @convention(c) (UInt32) -> Int32
    typealias IntOut = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    typealias DeviceGet = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    typealias DeviceGetName = @convention(c) (UnsafeMutablePointer<CChar>, Int32, Int32) -> Int32
    typealias DeviceGetAttribute = @convention(c) (UnsafeMutablePointer<Int32>, Int32, Int32) -> Int32
    typealias DeviceTotalMem = @convention(c) (UnsafeMutablePointer<Int>, Int32) -> Int32
    typealias PrimaryCtxRetain = @convention(c) (UnsafeMutablePointer<Ptr>, Int32) -> Int32
    typealias PrimaryCtxRelease = @convention(c) (Int32) -> Int32
    typealias CtxSetCurrent = @convention(c) (Ptr) -> Int32
    typealias Sync = @convention(c) () -> Int32
    typealias MemAlloc = @convention(c) (UnsafeMutablePointer<UInt64>, Int) -> Int32
    typealias MemFree = @convention(c) (UInt64) -> Int32
    typealias MemcpyHtoD = @convention(c) (UInt64, UnsafeRawPointer?, Int) -> Int32
    typealias MemcpyDtoH = @convention(c) (UnsafeMutableRawPointer?, UInt64, Int) -> Int32
    typealias ModuleLoadData = @convention(c) (UnsafeMutablePointer<Ptr>, UnsafeRawPointer) -> Int32
    typealias ModuleUnload = @convention(c) (Ptr) -> Int32
    typealias ModuleGetFunction = @convention(c) (UnsafeMutablePointer<Ptr>, Ptr, UnsafePointer<CChar>) -> Int32
    typealias LaunchKernel =
        @convention(c) (
            Ptr, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, Ptr,
            UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?
        ) -> Int32
    typealias EventCreate = @convention(c) (UnsafeMutablePointer<Ptr>, UInt32) -> Int32
    typealias EventRecord = @convention(c) (Ptr, Ptr) -> Int32
    typealias EventOne = @convention(c) (Ptr) -> Int32
    typealias EventElapsed = @convention(c) (UnsafeMutablePointer<Float>, Ptr, Ptr) -> Int32
    typealias ErrorText = @convention(c) (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Int32

    let initialize: Init
    let driverVersion: IntOut
    let deviceGetCount: IntOut
    let deviceGet: DeviceGet
    let deviceGetName: DeviceGetName
    let deviceGetAttribute: DeviceGetAttribute
    let deviceTotalMem: DeviceTotalMem
    let primaryCtxRetain: PrimaryCtxRetain
    let primaryCtxRelease: PrimaryCtxRelease
    let ctxSetCurrent: CtxSetCurrent
    let ctxSynchronize: Sync
    let memAlloc: MemAlloc
    let memFree: MemFree
    let memcpyHtoD: MemcpyHtoD
    let memcpyDtoH: MemcpyDtoH
    let moduleLoadData: ModuleLoadData
    let moduleUnload: ModuleUnload
    let moduleGetFunction: ModuleGetFunction
    let launchKernel: LaunchKernel
    let eventCreate: EventCreate
    let eventRecord: EventRecord
    let eventSynchronize: EventOne
    let eventDestroy: EventOne
    let eventElapsedTime: EventElapsed
    let getErrorName: ErrorText
    let getErrorString: ErrorText

    static let library = "libcuda.so.1"
    static let remedy =
        "the CUDA engine needs an NVIDIA GPU and its driver (libcuda.so.1); use --engine opencl (PoCL runs on the CPU) or --engine threads"

    static let shared: Result<CUDADriverAPI, DeviceError> = {
        let (handle, errors) = SharedLibrary.open([library])
        guard let handle else { return .failure(.libraryNotFound(library: library, tried: errors, remedy: remedy)) }
        do { return .success(try CUDADriverAPI(handle)) } catch let e as DeviceError { return .failure(e) } catch {
            return .failure(.usage("\(error)"))
        }
    }()

    private init(_ h: UnsafeMutableRawPointer) throws {
        func f<T>(_ name: String, _ t: T.Type) throws -> T { try SharedLibrary.symbol(h, name, library: Self.library, as: t) }
        initialize = try f("cuInit", Init.self)
        driverVersion = try f("cuDriverGetVersion", IntOut.self)
        deviceGetCount = try f("cuDeviceGetCount", IntOut.self)
        deviceGet = try f("cuDeviceGet", DeviceGet.self)
        deviceGetName = try f("cuDeviceGetName", DeviceGetName.self)
        deviceGetAttribute = try f("cuDeviceGetAttribute", DeviceGetAttribute.self)
        deviceTotalMem = try f("cuDeviceTotalMem_v2", DeviceTotalMem.self)
        primaryCtxRetain = try f("cuDevicePrimaryCtxRetain", PrimaryCtxRetain.self)
        primaryCtxRelease = try f("cuDevicePrimaryCtxRelease_v2", PrimaryCtxRelease.self)
        ctxSetCurrent = try f("cuCtxSetCurrent", CtxSetCurrent.self)
        ctxSynchronize = try f("cuCtxSynchronize", Sync.self)
        memAlloc = try f("cuMemAlloc_v2", MemAlloc.self)
        memFree = try f("cuMemFree_v2", MemFree.self)
        memcpyHtoD = try f("cuMemcpyHtoD_v2", MemcpyHtoD.self)
        memcpyDtoH = try f("cuMemcpyDtoH_v2", MemcpyDtoH.self)
        moduleLoadData = try f("cuModuleLoadData", ModuleLoadData.self)
        moduleUnload = try f("cuModuleUnload", ModuleUnload.self)
        moduleGetFunction = try f("cuModuleGetFunction", ModuleGetFunction.self)
        launchKernel = try f("cuLaunchKernel", LaunchKernel.self)
        eventCreate = try f("cuEventCreate", EventCreate.self)
        eventRecord = try f("cuEventRecord", EventRecord.self)
        eventSynchronize = try f("cuEventSynchronize", EventOne.self)
        eventDestroy = try f("cuEventDestroy_v2", EventOne.self)
        eventElapsedTime = try f("cuEventElapsedTime", EventElapsed.self)
        getErrorName = try f("cuGetErrorName", ErrorText.self)
        getErrorString = try f("cuGetErrorString", ErrorText.self)
    }

    /// Throws the driver's own name and text for a failed call.
    func check(_ code: Int32, _ call: String) throws {
        guard code != 0 else { return }
        var name: UnsafePointer<CChar>?
        var text: UnsafePointer<CChar>?
        _ = getErrorName(code, &name)
        _ = getErrorString(code, &text)
        let message = [name, text].compactMap { $0.map { String(cString: $0) } }.joined(separator: ": ")
        throw DeviceError.driver(backend: "cuda", call: call, code: Int(code), message: message)
    }

    /// "13.0" from the driver's integer version (13000).
    func version() throws -> String {
        var v: Int32 = 0
        try check(driverVersion(&v), "cuDriverGetVersion")
        return "\(v / 1000).\((v % 1000) / 10)"
    }

    struct DeviceInfo {
        let ordinal: Int32
        let name: String
        let major: Int32, minor: Int32
        let multiprocessors: Int32
        let memory: Int
        var architecture: String { "sm_\(major)\(minor)" }
    }

    func devices() throws -> [DeviceInfo] {
        try check(initialize(0), "cuInit")
        var count: Int32 = 0
        try check(deviceGetCount(&count), "cuDeviceGetCount")
        return try (0..<count).map { ordinal in
            var device: Int32 = 0
            try check(deviceGet(&device, ordinal), "cuDeviceGet")
            var name = [CChar](repeating: 0, count: 256)
            try check(deviceGetName(&name, 255, device), "cuDeviceGetName")
            var major: Int32 = 0, minor: Int32 = 0, sms: Int32 = 0
            try check(deviceGetAttribute(&major, 75, device), "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MAJOR)")
            try check(deviceGetAttribute(&minor, 76, device), "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MINOR)")
            try check(deviceGetAttribute(&sms, 16, device), "cuDeviceGetAttribute(MULTIPROCESSOR_COUNT)")
            var memory = 0
            try check(deviceTotalMem(&memory, device), "cuDeviceTotalMem_v2")
            return DeviceInfo(
                ordinal: device, name: String(nulTerminated: name), major: major, minor: minor, multiprocessors: sms, memory: memory)
        }
    }
}

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
            do {
                if try api.devices().isEmpty { return .unavailable(remedy: "the CUDA driver reports no device: " + CUDADriverAPI.remedy) }
            } catch { return .unavailable(remedy: "\(error)") }
            if case .failure = NVRTC.shared { return .unavailable(remedy: "NVRTC not found. " + NVRTC.remedy) }
            return .available(detail: "see pcnn devices")
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
        name = "\(info.name), \(info.architecture)"
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
        if sizes.removeValue(forKey: buffer.handle) != nil { _ = api.memFree(buffer.handle) }
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
            architecture + "\u{0}" + defines.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            + "\u{0}" + source
        let (cubin, log): ([UInt8], String)
        if let hit = Self.compiled.withLock({ $0[key] }) {
            (cubin, log) = hit
        } else {
            (cubin, log) = try NVRTC.shared.get().compile(source: source, architecture: architecture, defines: defines)
            Self.compiled.withLock { $0[key] = (cubin, log) }
        }
        try makeCurrent()
        var loaded: UnsafeMutableRawPointer?
        try cubin.withUnsafeBytes { try api.check(api.moduleLoadData(&loaded, $0.baseAddress!), "cuModuleLoadData(\(architecture) CUBIN)") }
        if let module { _ = api.moduleUnload(module) }
        module = loaded
        functions = []
        functionNames = [:]
        compileLog = log
    }

    public func kernel(_ name: String) throws -> DeviceKernel {
        if let h = functionNames[name] { return DeviceKernel(name: name, handle: h) }
        guard let module else { throw DeviceError.usage("cuda: kernel \(name) requested before compile") }
        var function: UnsafeMutableRawPointer?
        try api.check(api.moduleGetFunction(&function, module, name), "cuModuleGetFunction(\(name))")
        functions.append(function!)
        let h = UInt64(functions.count - 1)
        functionNames[name] = h
        return DeviceKernel(name: name, handle: h)
    }

    public func launch(_ kernel: DeviceKernel, groups: Int, groupSize: Int, arguments: [KernelArgument]) throws {
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
