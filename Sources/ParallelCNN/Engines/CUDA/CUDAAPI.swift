import Foundation
import Synchronization

/// The CUDA driver API from libcuda.so.1, loaded with `dlopen` (no CUDA headers or libraries at
/// build time). `_v2` symbols throughout, as the CUDA headers map them.
final class CUDADriverAPI: @unchecked Sendable {
    /// The `CUdevice_attribute` values pcnn reads, named as in `cuda.h`.
    enum Attribute {
        static let multiprocessorCount: Int32 = 16  // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
        static let computeCapabilityMajor: Int32 = 75  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        static let computeCapabilityMinor: Int32 = 76  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
    }

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
        let v = try versionNumber()
        return "\(v / 1000).\((v % 1000) / 10)"
    }

    /// The driver's integer version: 1000 * major + 10 * minor.
    func versionNumber() throws -> Int {
        var v: Int32 = 0
        try check(driverVersion(&v), "cuDriverGetVersion")
        return Int(v)
    }

    struct DeviceInfo {
        let ordinal: Int32
        let name: String
        let major: Int32, minor: Int32
        let multiprocessors: Int32
        let memory: Int
        var architecture: String { "sm_\(major)\(minor)" }
        /// 10 * major + minor, as NVRTC lists architectures.
        var capability: Int { Int(10 * major + minor) }
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
            try check(
                deviceGetAttribute(&major, Attribute.computeCapabilityMajor, device), "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MAJOR)")
            try check(
                deviceGetAttribute(&minor, Attribute.computeCapabilityMinor, device), "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MINOR)")
            try check(deviceGetAttribute(&sms, Attribute.multiprocessorCount, device), "cuDeviceGetAttribute(MULTIPROCESSOR_COUNT)")
            var memory = 0
            try check(deviceTotalMem(&memory, device), "cuDeviceTotalMem_v2")
            return DeviceInfo(
                ordinal: device, name: String(nulTerminated: name), major: major, minor: minor, multiprocessors: sms, memory: memory)
        }
    }
}
