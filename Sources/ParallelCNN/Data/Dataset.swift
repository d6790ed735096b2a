import Foundation

/// A set of labelled images of one shape (`shape`: 1×28×28 for MNIST, 3×32×32 for CIFAR-10).
///
/// Images loaded from IDX files stay bytes (47 MB for MNIST's training set, where floats take
/// 188 MB); engines convert each sample as they load it, with SPEC's formula
/// `Float(Double(byte) / 255.0)`. A set can also be built from floats (tests, synthetic data).
public struct Dataset: Sendable {
    /// A name for reports, e.g. "mnist-train".
    public let name: String
    /// One label per image, each in 0...9.
    public let labels: [UInt8]
    /// The shape of every image, `[c][y][x]` row-major.
    public let shape: ImageShape
    /// The pixels: exactly one of the two is set. Stored as two optionals, not as the enum
    /// `Storage`: an enum of two arrays keeps its case in the spare bits of the buffer pointer,
    /// which hides the buffer from LeakSanitizer (a set held in a test's `static let` was
    /// reported as leaked).
    private let byteStorage: [UInt8]?
    private let floatStorage: [Float]?

    private enum Storage: Sendable {
        case bytes([UInt8])
        case floats([Float])
    }

    private var storage: Storage {
        if let floatStorage { .floats(floatStorage) } else { .bytes(byteStorage!) }
    }

    /// Number of samples.
    public var count: Int { labels.count }

    /// - Precondition: `images.count == labels.count * shape.count` and every label is in 0...9.
    public init(name: String, images: [Float], labels: [UInt8], shape: ImageShape = .mnist) {
        self.init(name: name, storage: .floats(images), pixels: images.count, labels: labels, shape: shape)
    }

    /// A set of raw pixel bytes (as stored in IDX files), decoded per sample as it is used.
    /// - Precondition: as `init(name:images:labels:)`, with `pixelBytes` in place of `images`.
    public init(name: String, pixelBytes: [UInt8], labels: [UInt8], shape: ImageShape = .mnist) {
        self.init(name: name, storage: .bytes(pixelBytes), pixels: pixelBytes.count, labels: labels, shape: shape)
    }

    private init(name: String, storage: Storage, pixels: Int, labels: [UInt8], shape: ImageShape) {
        precondition(pixels == labels.count * shape.count, "\(name): \(pixels) pixels for \(labels.count) labels of \(shape)")
        precondition(labels.allSatisfy { Int($0) < Network.classes }, "\(name): label outside 0...9")
        self.name = name
        switch storage {
        case .bytes(let bytes): (byteStorage, floatStorage) = (bytes, nil)
        case .floats(let floats): (byteStorage, floatStorage) = (nil, floats)
        }
        self.labels = labels
        self.shape = shape
    }

    /// `pixelTable[b] == Float(Double(b) / 255.0)` for every byte `b`.
    public static let pixelTable: [Float] = (0...255).map { Float(Double($0) / 255.0) }

    /// Every pixel as a float, `count * shape.count`, row-major, image after image. A set of bytes is
    /// converted whole on every call: engines read `withImagePixels` instead.
    public var images: [Float] {
        switch storage {
        case .floats(let floats): floats
        case .bytes(let bytes): bytes.map { Self.pixelTable[Int($0)] }
        }
    }

    /// The raw bytes of a set loaded from IDX files (nil for a set built from floats).
    public var pixelBytes: [UInt8]? {
        if case .bytes(let bytes) = storage { bytes } else { nil }
    }

    /// The pixels of sample `index`, as floats.
    public func image(_ index: Int) -> ArraySlice<Float> {
        let range = index * shape.count..<(index + 1) * shape.count
        switch storage {
        case .floats(let floats): return floats[range]
        case .bytes(let bytes): return ArraySlice(bytes[range].map { Self.pixelTable[Int($0)] })
        }
    }

    /// Calls `body` with the storage of the pixels, for the CPU kernels.
    package func withImagePixels<R>(_ body: (ImagePixels) throws -> R) rethrows -> R {
        switch storage {
        case .floats(let floats): try floats.withUnsafeBufferPointer { try body(ImagePixels(floats: $0.baseAddress!)) }
        case .bytes(let bytes): try bytes.withUnsafeBufferPointer { try body(ImagePixels(bytes: $0.baseAddress!)) }
        }
    }

    /// The samples `samples`, in that order, as a new set named `name` (same storage kind).
    public func selecting(_ samples: some Collection<Int>, name: String) -> Dataset {
        let pixels = shape.count
        let labels = samples.map { self.labels[$0] }
        switch storage {
        case .floats(let floats):
            var out = [Float]()
            out.reserveCapacity(samples.count * pixels)
            for sample in samples { out.append(contentsOf: floats[(sample * pixels)..<((sample + 1) * pixels)]) }
            return Dataset(name: name, images: out, labels: labels, shape: shape)
        case .bytes(let bytes):
            var out = [UInt8]()
            out.reserveCapacity(samples.count * pixels)
            for sample in samples { out.append(contentsOf: bytes[(sample * pixels)..<((sample + 1) * pixels)]) }
            return Dataset(name: name, pixelBytes: out, labels: labels, shape: shape)
        }
    }

    /// The first `min(n, count)` samples, under the same name (for `--limit`).
    /// - Precondition: `n >= 0`.
    public func prefix(_ n: Int) -> Dataset {
        precondition(n >= 0, "negative prefix length \(n)")
        // The whole set is shared, not copied (47 MB for MNIST's training images).
        return n >= count ? self : selecting(0..<n, name: name)
    }
}

/// Where a data set's pixels lie, for the CPU kernels: bytes, decoded per sample by
/// `SampleWorkspace.loadImage`, or floats.
package struct ImagePixels: @unchecked Sendable {
    var bytes: UnsafePointer<UInt8>?
    var floats: UnsafePointer<Float>?

    init(bytes: UnsafePointer<UInt8>) { self.bytes = bytes }
    init(floats: UnsafePointer<Float>) { self.floats = floats }
}

/// The data sets the program knows. MNIST and Fashion-MNIST use the same four IDX file names;
/// CIFAR-10 its six binary batches (`CIFAR10`).
public enum DatasetKind: String, CaseIterable, Sendable {
    case mnist
    case fashionMNIST = "fashion-mnist"
    case cifar10

    public static let trainImagesFile = "train-images-idx3-ubyte.gz"
    public static let trainLabelsFile = "train-labels-idx1-ubyte.gz"
    public static let testImagesFile = "t10k-images-idx3-ubyte.gz"
    public static let testLabelsFile = "t10k-labels-idx1-ubyte.gz"

    /// The files: for the IDX sets, in the order train images, train labels, test images, test
    /// labels; for CIFAR-10 the five training batches, then the test batch.
    public var fileNames: [String] {
        self == .cifar10
            ? CIFAR10.trainFiles + [CIFAR10.testFile]
            : [Self.trainImagesFile, Self.trainLabelsFile, Self.testImagesFile, Self.testLabelsFile]
    }

    /// The shape of its images.
    public var imageShape: ImageShape { self == .cifar10 ? .cifar10 : .mnist }

    /// Base URLs to download the files from, tried in order.
    public var defaultMirrors: [URL] {
        let bases: [String] =
            switch self {
            case .mnist:
                [
                    "https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/",
                    "http://yann.lecun.com/exdb/mnist/"
                ]
            case .fashionMNIST:
                ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
            case .cifar10:
                []
            }
        return bases.compactMap(URL.init(string:))
    }

    /// SHA-256 (lowercase hex) of each `.gz` file, keyed by file name. Empty when no digests are
    /// known for certain (Fashion-MNIST): such a data set is never downloaded, since it could not
    /// be verified.
    public var sha256: [String: String] {
        switch self {
        case .mnist:
            [
                Self.trainImagesFile: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                Self.trainLabelsFile: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                Self.testImagesFile: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                Self.testLabelsFile: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
            ]
        case .fashionMNIST, .cifar10:
            [:]
        }
    }

    /// The name of each class, by label, where the labels are not simply digits.
    public var classNames: [String]? {
        switch self {
        case .mnist: nil
        case .fashionMNIST: ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        case .cifar10: ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        }
    }

    /// The environment variable naming a directory that holds the files.
    public var directoryEnvironmentVariable: String {
        switch self {
        case .mnist: "MNIST_DIR"
        case .fashionMNIST: "FASHION_MNIST_DIR"
        case .cifar10: "CIFAR10_DIR"
        }
    }

    /// Directories searched after the explicit one and the environment variable's; relative
    /// paths are relative to the current directory.
    public var defaultDirectories: [String] {
        switch self {
        case .mnist: ["data/mnist"]
        case .fashionMNIST: ["data/fashion-mnist", "/usr/share/datasets/fashion-mnist"]
        case .cifar10: ["data/cifar-10-batches-bin", "data/cifar10"]
        }
    }
}

/// The training and test sets of one data set.
public struct DatasetPair: Sendable {
    public let train: Dataset
    public let test: Dataset

    public init(train: Dataset, test: Dataset) {
        self.train = train
        self.test = test
    }
}

/// Finds and loads the IDX files of a data set.
public enum DatasetLoader {
    /// Finds the directory holding `kind`'s four files. Candidates, in order: `explicit` (the
    /// `--data` option), then the directory in `kind.directoryEnvironmentVariable` (`$MNIST_DIR`,
    /// `$FASHION_MNIST_DIR`), then `kind.defaultDirectories` (`./data/mnist`; for Fashion-MNIST
    /// `./data/fashion-mnist`, then `/usr/share/datasets/fashion-mnist`). Relative paths are taken
    /// relative to `currentDirectory`.
    ///
    /// A directory the user named (explicitly or through the environment variable) is never
    /// skipped silently: if it lacks files, this throws instead of falling through.
    /// - Returns: the first default directory holding all four files, or nil if none does.
    /// - Throws: `DataError.missingFiles` when the explicit or environment directory is incomplete.
    public static func locate(
        _ kind: DatasetKind, explicit: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        currentDirectory: String = FileManager.default.currentDirectoryPath
    ) throws(DataError) -> String? {
        func resolved(_ path: String) -> String {
            path.hasPrefix("/") ? path : (currentDirectory as NSString).appendingPathComponent(path)
        }
        let variable = kind.directoryEnvironmentVariable
        for (directory, origin) in [(explicit, "explicit directory"), (environment[variable], "$\(variable)")] {
            guard let directory, !directory.isEmpty else { continue }
            let path = resolved(directory)
            let missing = missingFiles(kind, in: path)
            guard missing.isEmpty else { throw .missingFiles(directory: path, origin: origin, missing: missing) }
            return path
        }
        return kind.defaultDirectories.map(resolved).first { missingFiles(kind, in: $0).isEmpty }
    }

    /// The path of file `name` in `directory`: `name` itself (`.gz`) if present, else the
    /// uncompressed variant without `.gz`; nil if neither is a regular file.
    public static func path(of name: String, in directory: String) -> String? {
        let compressed = (directory as NSString).appendingPathComponent(name)
        let candidates = [compressed, name.hasSuffix(".gz") ? String(compressed.dropLast(3)) : nil]
        return candidates.compactMap { $0 }.first { candidate in
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory)
            return exists && !isDirectory.boolValue
        }
    }

    /// The names among `kind.fileNames` that `directory` lacks in both forms.
    public static func missingFiles(_ kind: DatasetKind, in directory: String) -> [String] {
        kind.fileNames.filter { path(of: $0, in: directory) == nil }
    }

    /// Loads the training and test sets from `directory`, which must hold the four files, each as
    /// `name.gz` or as uncompressed `name` (without `.gz`). Sets are named "<kind>-train" and
    /// "<kind>-test".
    /// - Throws: `DataError` naming the faulty file: `.missingFiles` if files are absent, or any
    ///   fault `IDX` finds, or `.countMismatch` if images and labels disagree.
    public static func load(_ kind: DatasetKind, from directory: String) throws(DataError) -> DatasetPair {
        if kind == .cifar10 { return try CIFAR10.load(from: directory) }
        let found = kind.fileNames.map { (name: $0, path: path(of: $0, in: directory)) }
        let missing = found.filter { $0.path == nil }.map(\.name)
        guard missing.isEmpty else {
            throw .missingFiles(directory: directory, origin: "given directory", missing: missing)
        }
        let paths = found.compactMap(\.path)
        return DatasetPair(
            train: try loadSplit(name: "\(kind.rawValue)-train", imagesPath: paths[0], labelsPath: paths[1]),
            test: try loadSplit(name: "\(kind.rawValue)-test", imagesPath: paths[2], labelsPath: paths[3]))
    }

    /// Loads one images file and its labels file as a data set named `name`.
    /// - Throws: `DataError` for a fault in either file, or `.countMismatch`.
    public static func loadSplit(name: String, imagesPath: String, labelsPath: String) throws(DataError) -> Dataset {
        let labels = try IDX.readLabels(at: labelsPath)
        let pixels = try IDX.readImages(at: imagesPath)
        let images = pixels.count / Network.imagePixels
        guard images == labels.count else {
            throw .countMismatch(imagesPath: imagesPath, images: images, labelsPath: labelsPath, labels: labels.count)
        }
        return Dataset(name: name, pixelBytes: pixels, labels: labels)
    }
}
