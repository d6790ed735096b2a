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

    /// The OpenCL 1.2 constants pcnn uses, named as in `CL/cl.h`.
    enum Constant {
        static let platformVersion: UInt32 = 0x0901  // CL_PLATFORM_VERSION
        static let platformName: UInt32 = 0x0902  // CL_PLATFORM_NAME
        static let deviceTypeAll: UInt64 = 0xFFFF_FFFF  // CL_DEVICE_TYPE_ALL
        static let deviceMaxComputeUnits: UInt32 = 0x1002  // CL_DEVICE_MAX_COMPUTE_UNITS
        static let deviceGlobalMemSize: UInt32 = 0x101F  // CL_DEVICE_GLOBAL_MEM_SIZE
        static let deviceLocalMemSize: UInt32 = 0x1023  // CL_DEVICE_LOCAL_MEM_SIZE
        static let deviceName: UInt32 = 0x102B  // CL_DEVICE_NAME
        static let deviceVersion: UInt32 = 0x102F  // CL_DEVICE_VERSION
        static let deviceOpenCLCVersion: UInt32 = 0x103D  // CL_DEVICE_OPENCL_C_VERSION
        static let programBuildLog: UInt32 = 0x1183  // CL_PROGRAM_BUILD_LOG
        static let profilingCommandStart: UInt32 = 0x1282  // CL_PROFILING_COMMAND_START
        static let profilingCommandEnd: UInt32 = 0x1283  // CL_PROFILING_COMMAND_END
        static let memReadWrite: UInt64 = 1  // CL_MEM_READ_WRITE
        static let queueProfilingEnable: UInt64 = 2  // CL_QUEUE_PROFILING_ENABLE
        static let blocking: UInt32 = 1  // CL_TRUE, for a blocking read or write
    }

    static let library = "libOpenCL.so.1"
    static let remedy = """
        Install an OpenCL ICD loader and a driver; with no GPU, PoCL runs OpenCL on the CPU: \
        `apt-get install ocl-icd-libopencl1 pocl-opencl-icd` (`scripts/setup` does it with PCNN_WITH_GPU=1)
        """

    /// The loaded API, or why it cannot be loaded (cached: the loader is opened once per process).
    static let shared: Result<OpenCLAPI, DeviceError> = {
        // PoCL's default work-group method on the CPU (loopvec, PoCL 3.1) corrupts the heap on
        // the persistent kernel of a described network (barriers inside loops of inlined passes);
        // loops runs it correctly. Set before the loader starts PoCL; a user's own choice stands.
        setenv("POCL_WORK_GROUP_METHOD", "loops", 0)
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
            let platformName =
                string(getPlatformInfo, platform, Constant.platformName) + " ("
                + string(getPlatformInfo, platform, Constant.platformVersion) + ")"
            var n: UInt32 = 0
            guard getDeviceIDs(platform, Constant.deviceTypeAll, 0, nil, &n) == 0, n > 0 else { continue }
            var ids = [Handle](repeating: nil, count: Int(n))
            try check(getDeviceIDs(platform, Constant.deviceTypeAll, n, &ids, nil), "clGetDeviceIDs")
            for id in ids {
                guard let id else { continue }
                result.append(
                    DeviceInfo(
                        platform: platformName, name: string(getDeviceInfo, id, Constant.deviceName),
                        version: string(getDeviceInfo, id, Constant.deviceVersion),
                        cVersion: string(getDeviceInfo, id, Constant.deviceOpenCLCVersion),
                        computeUnits: Int(integer(id, Constant.deviceMaxComputeUnits, UInt32.self)),
                        localMemory: Int(integer(id, Constant.deviceLocalMemSize, UInt64.self)),
                        globalMemory: Int(integer(id, Constant.deviceGlobalMemSize, UInt64.self)),
                        handle: id))
            }
        }
        return result
    }
}

extension String {
    /// The string without the characters of `set` at either end.
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
