import Foundation
import Serving
import VeilCore
import Policy
import Gateway
import Ingestion
import Recommender
import Testing

@Suite struct ConfigurationTests {
    @Test func theExampleFileParsesToItsValues() throws {
        let config = try VeilConfiguration.load(path: repositoryRoot.appendingPathComponent("veil.example.yaml").path)
        #expect(config.dataDirectory == "./data")
        #expect(config.port == 8080)
        #expect(config.tlsCertificate == nil)
        #expect(config.cacheTTL == 30)
        #expect(config.serving.minimumSegmentSize == 5)
        #expect(config.serving.contentSimilarity == ["electronics": .categorical, "books": .text])
        #expect(config.rateLimits["compliance-officer"] == RateLimit(perSecond: 200, burst: 400))
        #expect(config.quality.maxRejectRate == 0.2)
        #expect(config.ingestion.outliers.action == .cap)
        #expect(config.ingestion.outliers.method == .iqr)
        #expect(config.auditHeadEveryEntries == 100_000 && config.auditHeadMaxAgeSeconds == 30)
    }

    @Test func settingsOverrideDefaultsAndNothingElse() throws {
        let config = try VeilConfiguration.parse(
            """
            server:
              port: 9443
              tls_cert: c.pem
              tls_key: k.pem
            recommendations:
              exclude_interacted_kinds: [purchase]
            ingestion:
              outliers: exclude
              outlier_method: robust-z
            """, file: "t.yaml")
        #expect(config.port == 9443)
        #expect(config.host == nil)
        #expect(config.tlsCertificate == "c.pem" && config.tlsKey == "k.pem")
        #expect(config.serving.excludeInteractedKinds == [.purchase])
        #expect(config.serving.minimumSegmentSize == ServingOptions().minimumSegmentSize)
        #expect(config.ingestion.outliers.action == .exclude)
        #expect(config.ingestion.outliers.effectiveThreshold == 3.5)
        #expect(try VeilConfiguration.parse("", file: "empty.yaml") == VeilConfiguration())
    }

    /// A typo or a wrong value is an error naming file, line and the fix, never a silently kept default.
    @Test func mistakesAreNamedWithTheirLine() {
        func error(_ text: String) -> String {
            do {
                _ = try VeilConfiguration.parse(text, file: "veil.yaml")
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        #expect(
            error("server:\n  prot: 80\n")
                == "veil.yaml:2: unknown key 'prot' in server; known keys: host, port, tls_cert, tls_key, retrain_interval_s, unlearn_within_s, rechoose_within_s, retention_interval_s, log_level, header_timeout_s, body_timeout_s, idle_timeout_s, max_connections"
        )
        #expect(error("server:\n  port: 70000\n").hasPrefix("veil.yaml:2: server.port must be a whole number from 0 to 65535"))
        #expect(error("recommendations:\n  exclude_interacted_kinds: [bought]\n").contains("an interaction kind is 'bought'; use one of"))
        #expect(error("quality:\n  max_reject_rate: 2\n").contains("quality.max_reject_rate must be a number from 0.0 to 1.0"))
        #expect(error("server:\n  tls_cert: a.pem\n").contains("tls_cert and server.tls_key go together"))
        #expect(error("rate_limits:\n  app: {per_second: 5}\n").contains("rate_limits.app needs per_second and burst"))
        #expect(error("recommendations:\n  content_similarity: {apparel: fuzzy}\n").contains("use one of: categorical, text"))
        #expect(error("server: [1, 2\n").hasPrefix("veil.yaml:"))
        #expect(error("- a\n- b\n").contains("must be a mapping"))
        #expect(error("audit:\n  head_every_entries: 0\n").contains("audit.head_every_entries must be a whole number from 1 to 100000000"))
        #expect(error("audit:\n  head_max_age_s: 0\n").contains("audit.head_max_age_s must be a whole number from 1 to 86400"))
        #expect(error("audit:\n  log_name: Gateway 1\n").contains("veil.yaml:2: audit.log_name is 1 to 32 lower-case letters, digits and '-'"))
        #expect(error("storage:\n  gateways: many\n").contains("veil.yaml:2: storage.gateways is one (the default) or several"))
        #expect(error("storage:\n  key_role: \"keys; DROP TABLE x\"\n").contains("veil.yaml:2: storage.key_role is a PostgreSQL role name"))
    }

    @Test func severalGatewaysNameTheirDatabaseSharingAndTheirLogs() throws {
        let config = try VeilConfiguration.parse(
            "storage:\n  url: postgres://veil@db/veil\n  gateways: several\n  key_role: veil_keys\naudit:\n  log_name: gw-2\n", file: "gw.yaml")
        #expect(config.sharedDatabase && config.auditLogName == "gw-2" && config.keyRole == "veil_keys")
        #expect(!VeilConfiguration().sharedDatabase && VeilConfiguration().auditLogName == nil)
    }
}
