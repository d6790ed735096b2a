import Foundation

/// NVRTC, the CUDA runtime compiler, loaded with `dlopen`. It needs no GPU: `pcnn devices
/// --compile-cuda` compiles every kernel with it and reports ptxas's registers and spills.
public final class NVRTC: @unchecked Sendable {
    typealias Program = OpaquePointer?
    typealias Version = @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
    typealias CreateProgram =
        @convention(c) (
            UnsafeMutablePointer<Program>, UnsafePointer<CChar>, UnsafePointer<CChar>?, Int32, UnsafePointer<UnsafePointer<CChar>?>?,
            UnsafePointer<UnsafePointer<CChar>?>?
        ) -> Int32
    typealias Compile = @convention(c) (Program, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    typealias GetSize = @convention(c) (Program, UnsafeMutablePointer<Int>) -> Int32
    typealias GetBytes = @convention(c) (Program, UnsafeMutablePointer<CChar>) -> Int32
    typealias Destroy = @convention(c) (UnsafeMutablePointer<Program>) -> Int32
    typealias ErrorString = @convention(c) (Int32) -> UnsafePointer<CChar>?
    typealias IntOut = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32

    private let versionFn: Version
    private let createProgram: CreateProgram
    private let compileProgram: Compile
    private let logSize: GetSize
    private let log: GetBytes
    private let cubinSize: GetSize
    private let cubin: GetBytes
    private let destroy: Destroy
    private let errorString: ErrorString
    private let ptxSize: GetSize
    private let ptx: GetBytes
    /// `nvrtcGetNumSupportedArchs`/`nvrtcGetSupportedArchs` (NVRTC 11.2 and later).
    private let supportedCount: IntOut?
    private let supportedList: IntOut?
    /// The file that was loaded.
    public let path: String

    public static let remedy = """
        Install NVRTC: `python3 -m pip install nvidia-cuda-nvrtc` (no GPU needed), or the CUDA toolkit, \
        or point PCNN_NVRTC at libnvrtc.so
        """

    /// Where NVRTC is looked for, in order: $PCNN_NVRTC, $CUDA_HOME, the usual CUDA directories,
    /// then the pip wheels' site-packages (nvidia/cu13/lib, nvidia/cuda_nvrtc/lib) of the active
    /// virtual environment, ./.venv, the user's and the system's Pythons.
    public static func candidates() -> [String] {
        let env = ProcessInfo.processInfo.environment
        var paths: [String] = []
        if let p = env["PCNN_NVRTC"], !p.isEmpty { paths.append(p) }
        let names = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"]
        var dirs: [String] = []
        if let home = env["CUDA_HOME"] ?? env["CUDA_PATH"] { dirs += ["\(home)/lib64", "\(home)/lib", "\(home)/targets/x86_64-linux/lib"] }
        dirs += [
            "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64",
            "/opt/cuda/lib64"
        ]
        var sitePackages: [String] = []
        let fm = FileManager.default
        var pythonRoots: [String] = []
        if let v = env["VIRTUAL_ENV"] { pythonRoots.append("\(v)/lib") }
        pythonRoots.append(fm.currentDirectoryPath + "/.venv/lib")
        if let home = env["HOME"] { pythonRoots.append("\(home)/.local/lib") }
        pythonRoots += ["/usr/local/lib", "/usr/lib", "/opt/conda/lib"]
        for root in pythonRoots {
            for entry in ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted().reversed() where entry.hasPrefix("python3") {
                sitePackages += ["\(root)/\(entry)/site-packages", "\(root)/\(entry)/dist-packages"]
            }
        }
        for site in sitePackages { dirs += ["\(site)/nvidia/cu13/lib", "\(site)/nvidia/cuda_nvrtc/lib"] }
        for dir in dirs {
            for name in names where fm.fileExists(atPath: "\(dir)/\(name)") { paths.append("\(dir)/\(name)") }
        }
        paths += names  // the dynamic linker's own search (LD_LIBRARY_PATH, ld.so.cache)
        return paths
    }

    /// The loaded compiler, or why none could be loaded.
    public static let shared: Result<NVRTC, DeviceError> = {
        var tried: [String] = []
        let driverMajor = (try? CUDADriverAPI.shared.get().versionNumber()).map { $0 / 1000 }
        for path in preferred(candidates(), driverMajor: driverMajor) {
            let (handle, errors) = SharedLibrary.open([path])
            tried += errors
            if let handle {
                do { return .success(try NVRTC(handle, path: path)) } catch let e as DeviceError { return .failure(e) } catch {}
            }
        }
        return .failure(.libraryNotFound(library: "libnvrtc.so", tried: Array(tried.suffix(4)), remedy: remedy))
    }()

    private init(_ h: UnsafeMutableRawPointer, path: String) throws {
        func f<T>(_ name: String, _ t: T.Type) throws -> T { try SharedLibrary.symbol(h, name, library: path, as: t) }
        self.path = path
        versionFn = try f("nvrtcVersion", Version.self)
        createProgram = try f("nvrtcCreateProgram", CreateProgram.self)
        compileProgram = try f("nvrtcCompileProgram", Compile.self)
        logSize = try f("nvrtcGetProgramLogSize", GetSize.self)
        log = try f("nvrtcGetProgramLog", GetBytes.self)
        cubinSize = try f("nvrtcGetCUBINSize", GetSize.self)
        cubin = try f("nvrtcGetCUBIN", GetBytes.self)
        destroy = try f("nvrtcDestroyProgram", Destroy.self)
        errorString = try f("nvrtcGetErrorString", ErrorString.self)
        ptxSize = try f("nvrtcGetPTXSize", GetSize.self)
        ptx = try f("nvrtcGetPTX", GetBytes.self)
        supportedCount = try? f("nvrtcGetNumSupportedArchs", IntOut.self)
        supportedList = try? f("nvrtcGetSupportedArchs", IntOut.self)
    }

    /// The major version of the library at `path`, from its name (libnvrtc.so.12, or the pip
    /// wheel's directory: nvidia/cu13 is 13, nvidia/cuda_nvrtc is 12); nil if neither says.
    public static func majorVersion(ofPath path: String) -> Int? {
        if let r = path.range(of: "libnvrtc.so."), let major = Int(path[r.upperBound...].prefix { $0.isNumber }) { return major }
        if let r = path.range(of: "/nvidia/cu"), let major = Int(path[r.upperBound...].prefix { $0.isNumber }) { return major }
        if path.contains("/nvidia/cuda_nvrtc/") { return 12 }
        return nil
    }

    /// `candidates` in the order to try them for a driver of major version `driverMajor`
    /// (`cuDriverGetVersion` / 1000; nil without a driver): an NVRTC no newer than the driver
    /// first, the newest of those first, since a CUBIN or PTX from a newer NVRTC may be refused
    /// by an older driver; then the rest in their order. Without a driver the order stands.
    public static func preferred(_ candidates: [String], driverMajor: Int?) -> [String] {
        guard let driverMajor else { return candidates }
        let fitting = candidates.enumerated().filter { (majorVersion(ofPath: $0.element) ?? Int.max) <= driverMajor }
            .sorted { (majorVersion(ofPath: $0.element)!, -$0.offset) > (majorVersion(ofPath: $1.element)!, -$1.offset) }
            .map(\.element)
        return fitting + candidates.filter { !fitting.contains($0) }
    }

    /// What NVRTC compiles for a device: a CUBIN for an architecture the device runs, or PTX
    /// that the driver compiles when it loads it.
    public enum Target: Equatable, Sendable {
        case cubin(String)
        case ptx(String)
        /// The `--gpu-architecture` value.
        public var option: String {
            switch self {
            case .cubin(let sm): sm
            case .ptx(let compute): compute
            }
        }
    }

    /// The target for a device of compute capability `major.minor` (as 10 * major + minor)
    /// when this NVRTC supports the `supported` architectures (the same encoding): the device's
    /// own CUBIN if supported; else the newest supported CUBIN of the same major and no newer
    /// minor (binary compatible); else PTX of the newest supported architecture below the
    /// device, which the driver compiles; nil if every supported architecture is newer.
    public static func target(forDevice capability: Int, supported: [Int]) -> Target? {
        if supported.contains(capability) { return .cubin("sm_\(capability)") }
        if let same = supported.filter({ $0 / 10 == capability / 10 && $0 < capability }).max() { return .cubin("sm_\(same)") }
        if let older = supported.filter({ $0 < capability }).max() { return .ptx("compute_\(older)") }
        return nil
    }

    /// The architectures this NVRTC compiles for (10 * major + minor), or nil if it cannot say.
    public var supportedArchitectures: [Int]? {
        guard let supportedCount, let supportedList else { return nil }
        var n: Int32 = 0
        guard supportedCount(&n) == 0, n > 0 else { return nil }
        var list = [Int32](repeating: 0, count: Int(n))
        guard supportedList(&list) == 0 else { return nil }
        return list.map(Int.init)
    }

    /// The target for a device of compute capability `capability` with this NVRTC; throws with
    /// the architectures it does support when none fits.
    public func target(forDevice capability: Int) throws -> Target {
        guard let supported = supportedArchitectures else { return .cubin("sm_\(capability)") }
        guard let target = Self.target(forDevice: capability, supported: supported) else {
            throw DeviceError.noDevice(
                backend: "nvrtc",
                detail:
                    "NVRTC \(version) (\(path)) compiles for \(supported.map { "sm_\($0)" }.joined(separator: ", ")), none of which an sm_\(capability) device runs; install an older NVRTC (PCNN_NVRTC)"
            )
        }
        return target
    }

    /// "13.0" and so on.
    public var version: String {
        var major: Int32 = 0, minor: Int32 = 0
        _ = versionFn(&major, &minor)
        return "\(major).\(minor)"
    }

    private func check(_ code: Int32, _ call: String) throws {
        guard code == 0 else {
            throw DeviceError.driver(
                backend: "nvrtc", call: call, code: Int(code), message: errorString(code).map { String(cString: $0) } ?? "")
        }
    }

    /// Compiles `source` to a CUBIN for `architecture` (e.g. "sm_90"), or to PTX for a virtual
    /// one ("compute_90"), returning it with the compiler's log (ptxas's resource lines included
    /// for a CUBIN). A rejected source throws `DeviceError.compilation` with the log verbatim;
    /// any other failure keeps the log in its message.
    public func compile(source: String, architecture: String, defines: [String: String]) throws -> (cubin: [UInt8], log: String) {
        var program: Program = nil
        try check(createProgram(&program, source, "parallelcnn.cu", 0, nil, nil), "nvrtcCreateProgram")
        defer { _ = destroy(&program) }
        let isPTX = architecture.hasPrefix("compute_")
        let options =
            ["--gpu-architecture=\(architecture)", "--fmad=false", "-default-device"] + (isPTX ? [] : ["--ptxas-options=-v"])
            + defines.sorted { $0.key < $1.key }.map { "-D\($0.key)=\($0.value)" }
        let status = options.withCStrings { compileProgram(program, Int32(options.count), $0) }
        var size = 0
        _ = logSize(program, &size)
        var text = [CChar](repeating: 0, count: max(size, 1) + 1)
        if size > 0 { _ = log(program, &text) }
        let logText = String(nulTerminated: text)
        if status == 6 /* NVRTC_ERROR_COMPILATION */ { throw DeviceError.compilation(backend: "nvrtc \(architecture)", log: logText) }
        if status != 0 {
            let message = (errorString(status).map { String(cString: $0) } ?? "") + (logText.isEmpty ? "" : "; compiler log:\n" + logText)
            throw DeviceError.driver(backend: "nvrtc", call: "nvrtcCompileProgram(\(architecture))", code: Int(status), message: message)
        }
        var binarySize = 0
        try check((isPTX ? ptxSize : cubinSize)(program, &binarySize), isPTX ? "nvrtcGetPTXSize" : "nvrtcGetCUBINSize")
        var binary = [CChar](repeating: 0, count: binarySize)
        try check((isPTX ? ptx : cubin)(program, &binary), isPTX ? "nvrtcGetPTX" : "nvrtcGetCUBIN")
        return (binary.map { UInt8(bitPattern: $0) }, logText)
    }

    /// One kernel's resources as ptxas reported them.
    public struct KernelResources: Sendable, Equatable {
        public var name: String
        public var registers = 0
        public var sharedBytes = 0
        public var stackBytes = 0
        public var spillStores = 0
        public var spillLoads = 0
    }

    /// Parses ptxas's `-v` lines ("Compiling entry function 'k'", "N bytes stack frame, N bytes
    /// spill stores, N bytes spill loads", "Used N registers, ... N bytes smem") per kernel.
    public static func resources(fromLog log: String) -> [KernelResources] {
        var result: [KernelResources] = []
        func number(before word: String, in line: Substring) -> Int? {
            guard let r = line.range(of: word) else { return nil }
            let head = line[..<r.lowerBound].trimmingCharacters(in: .whitespaces)
            return Int(head.split(separator: " ").last.map(String.init) ?? "")
        }
        for line in log.split(separator: "\n") {
            if let r = line.range(of: "Compiling entry function '") {
                let rest = line[r.upperBound...]
                result.append(KernelResources(name: String(rest.prefix { $0 != "'" })))
            } else if !result.isEmpty {
                let parts = line.split(separator: ",")
                for part in parts {
                    if let n = number(before: "registers", in: part) { result[result.count - 1].registers = n }
                    if let n = number(before: "bytes smem", in: part) { result[result.count - 1].sharedBytes = n }
                    if let n = number(before: "bytes stack frame", in: part) { result[result.count - 1].stackBytes = n }
                    if let n = number(before: "bytes spill stores", in: part) { result[result.count - 1].spillStores = n }
                    if let n = number(before: "bytes spill loads", in: part) { result[result.count - 1].spillLoads = n }
                }
            }
        }
        return result
    }
}

extension Array where Element == String {
    /// Calls `body` with a C array of the strings (valid only inside `body`).
    func withCStrings<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>) throws -> R) rethrows -> R {
        let copies = map { strdup($0) }
        defer { copies.forEach { Foundation.free($0) } }
        let pointers = copies.map { UnsafePointer<CChar>($0) }
        return try pointers.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }
}
