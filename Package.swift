// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    // Veil's own code is optimized in debug builds too: the test suite trains models, seals thousands of rows and
    // imports MovieLens, which at -Onone took minutes. Dependencies keep the configuration's setting.
    .unsafeFlags(["-O"], .when(configuration: .debug)),
]

let package = Package(
    name: "veil",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "veil", targets: ["veil"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .systemLibrary(
            name: "CCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(name: "Vault", dependencies: ["CSodium", "CCrypto"], swiftSettings: swiftSettings),
        .target(name: "Storage", dependencies: ["Vault"], swiftSettings: swiftSettings),
        .target(
            name: "Policy",
            dependencies: [.product(name: "Yams", package: "Yams"), "Vault"],
            swiftSettings: swiftSettings
        ),
        .target(name: "Pseudonymization", dependencies: ["Policy", "Storage", "Vault"], swiftSettings: swiftSettings),
        .target(name: "Consent", dependencies: ["Policy", "Storage", "Vault"], swiftSettings: swiftSettings),
        .target(name: "Ingestion", dependencies: ["Policy", "Pseudonymization", "Vault"], swiftSettings: swiftSettings),
        .target(name: "FeatureStore", dependencies: ["Policy", "Storage", "Vault"], swiftSettings: swiftSettings),
        // The storage seam: the operational database's unit of work and store, as the core sees them.
        .target(name: "Persistence", dependencies: ["Storage", "Consent", "Pseudonymization", "FeatureStore"], swiftSettings: swiftSettings),
        // The SQLite backend: every table, migration and statement of the modules above, behind their repositories.
        .target(
            name: "SQLiteStorage",
            dependencies: [
                "Storage", "Vault", "Consent", "Pseudonymization", "FeatureStore", "Persistence", .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // The PostgreSQL backend: the same repositories over postgres-nio, for several gateways on one database.
        .target(
            name: "PostgresStorage",
            dependencies: [
                "Storage", "Vault", "Consent", "Pseudonymization", "FeatureStore", "Persistence",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The audit log keeps a SQLite engine of its own (its files, its sync order).
        .target(
            name: "Audit",
            dependencies: ["Storage", "SQLiteStorage", "Vault", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .target(name: "Recommender", dependencies: ["COpenBLAS"], swiftSettings: swiftSettings),
        // The serving side of the recommender, without I/O: the served model, the ranker, segments, provenance.
        .target(name: "Serving", dependencies: ["Recommender", "FeatureStore", "Policy", "Storage", "Vault"], swiftSettings: swiftSettings),
        // The core: the use cases (consent, ingest, subject rights, recommend, train, keys) and their typed errors; no HTTP.
        .target(
            name: "VeilCore",
            dependencies: [
                "Vault", "Storage", "Persistence", "Policy", "Consent", "Pseudonymization", "Audit", "Ingestion",
                "FeatureStore", "Recommender", "Serving",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Gateway",
            dependencies: [
                "VeilCore", "Policy", "Consent", "Audit", "Ingestion",
                "FeatureStore", "Recommender", "Serving",
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            resources: [.copy("openapi.yaml")],
            swiftSettings: swiftSettings,
            plugins: ["EmbedScript"]
        ),
        // Builds the tool the plugin runs to put veil.js into the binary.
        .executableTarget(name: "EmbedFile", path: "Plugins/EmbedFile"),
        .plugin(name: "EmbedScript", capability: .buildTool(), dependencies: ["EmbedFile"]),
        .executableTarget(
            name: "veil",
            dependencies: [
                "Vault", "Storage", "SQLiteStorage", "PostgresStorage", "Persistence", "Policy", "Consent", "Audit", "Ingestion",
                "Pseudonymization", "FeatureStore", "Recommender", "Serving", "VeilCore",
                "Gateway",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "VaultTests", dependencies: ["Vault"], swiftSettings: swiftSettings),
        // Helpers shared by test targets (a test target cannot depend on another).
        .target(
            name: "TestSupport",
            dependencies: ["Recommender", "Persistence", "SQLiteStorage", "PostgresStorage", .product(name: "GRDB", package: "GRDB.swift")],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "SQLiteStorage", "Vault", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "PolicyTests", dependencies: ["Policy"], swiftSettings: swiftSettings),
        .testTarget(
            name: "PseudonymizationTests",
            dependencies: ["Pseudonymization", "Policy", "Storage", "SQLiteStorage", "Vault", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ConsentTests",
            dependencies: ["Consent", "Policy", "Storage", "SQLiteStorage", "Vault", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AuditTests",
            dependencies: ["Audit", "Storage", "SQLiteStorage", "Vault", "TestSupport", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "RecommenderTests", dependencies: ["Recommender"], swiftSettings: swiftSettings),
        // The operational repositories, the same tests on every backend.
        .testTarget(
            name: "BackendTests",
            dependencies: [
                "Persistence", "SQLiteStorage", "PostgresStorage", "Storage", "Vault", "Consent", "Pseudonymization", "FeatureStore", "TestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "IngestionTests", dependencies: ["Ingestion", "Pseudonymization", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway", "VeilCore", "Serving", "Vault", "Storage", "Persistence", "SQLiteStorage", "PostgresStorage", "Policy", "Audit",
                "FeatureStore", "Ingestion",
                "Pseudonymization",
                "Recommender",
                "TestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
