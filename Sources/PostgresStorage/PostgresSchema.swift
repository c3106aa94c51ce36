import Foundation
import PostgresNIO
import Storage

/// The operational database's tables in PostgreSQL, the same as the SQLite backend's final schema, and the
/// migrations that build them: applied at start under a session advisory lock, each in a transaction of its own,
/// recorded in `veil_migrations`, so several gateways starting at once migrate once.
enum PostgresSchema {
    struct Migration {
        let id: String
        let sql: String
    }

    static let migrations: [Migration] = [
        Migration(
            id: "v1.operational",
            sql: """
                CREATE SCHEMA IF NOT EXISTS veil_keys;
                CREATE TABLE veil_keys.subject_keys (
                    token TEXT PRIMARY KEY,
                    key_version BIGINT NOT NULL,
                    generation BIGINT NOT NULL DEFAULT 1,
                    wrapped BYTEA NOT NULL,
                    created_at BIGINT NOT NULL
                );
                CREATE INDEX subject_keys_version ON veil_keys.subject_keys (key_version);
                CREATE TABLE veil_keys.shredded_subjects (
                    token TEXT PRIMARY KEY,
                    shredded_at BIGINT NOT NULL
                );
                CREATE TABLE consent_events (
                    seq BIGINT PRIMARY KEY,
                    token TEXT NOT NULL,
                    purpose TEXT NOT NULL,
                    body TEXT NOT NULL,
                    prev_hash TEXT NOT NULL,
                    hash TEXT NOT NULL
                );
                CREATE INDEX consent_events_token ON consent_events (token, seq);
                CREATE FUNCTION veil_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN RAISE EXCEPTION 'the consent ledger is append-only'; END $$;
                CREATE TRIGGER consent_events_append_only BEFORE UPDATE OR DELETE ON consent_events
                    FOR EACH ROW EXECUTE FUNCTION veil_append_only();
                CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
                    FOR EACH STATEMENT EXECUTE FUNCTION veil_append_only();
                CREATE TABLE consent_state (
                    token TEXT NOT NULL,
                    purpose TEXT NOT NULL,
                    granted BOOLEAN NOT NULL,
                    seq BIGINT NOT NULL,
                    expires_at BIGINT,
                    notice_version TEXT NOT NULL DEFAULT '',
                    purpose_version INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (token, purpose)
                );
                CREATE TABLE identities (
                    token TEXT PRIMARY KEY,
                    body BYTEA NOT NULL
                );
                CREATE TABLE match_keys (
                    kind TEXT NOT NULL,
                    key TEXT NOT NULL,
                    token TEXT NOT NULL,
                    name_grams TEXT,
                    PRIMARY KEY (kind, key, token)
                );
                CREATE INDEX match_keys_token ON match_keys (token);
                CREATE TABLE identity_links (
                    token TEXT PRIMARY KEY,
                    canonical TEXT NOT NULL,
                    rule TEXT NOT NULL,
                    score DOUBLE PRECISION NOT NULL,
                    created_at BIGINT NOT NULL,
                    scope TEXT
                );
                CREATE INDEX identity_links_canonical ON identity_links (canonical);
                CREATE TABLE interactions (
                    token TEXT NOT NULL,
                    id TEXT NOT NULL,
                    day BIGINT NOT NULL,
                    body BYTEA NOT NULL,
                    uncounted BOOLEAN NOT NULL DEFAULT FALSE,
                    PRIMARY KEY (token, id)
                );
                CREATE INDEX interactions_day ON interactions (day);
                CREATE TABLE profiles (
                    token TEXT PRIMARY KEY,
                    body BYTEA NOT NULL
                );
                CREATE TABLE items (
                    id TEXT PRIMARY KEY,
                    body TEXT NOT NULL,
                    available BOOLEAN NOT NULL,
                    updated_at BIGINT NOT NULL
                );
                CREATE TABLE item_daily_counts (
                    item TEXT NOT NULL,
                    day BIGINT NOT NULL,
                    count BIGINT NOT NULL,
                    PRIMARY KEY (item, day)
                );
                CREATE TABLE deliveries (
                    token TEXT NOT NULL,
                    key TEXT NOT NULL,
                    at BIGINT NOT NULL,
                    PRIMARY KEY (token, key)
                );
                CREATE INDEX deliveries_at ON deliveries (at);
                CREATE TABLE principals (
                    name TEXT PRIMARY KEY,
                    role TEXT NOT NULL,
                    namespace TEXT NOT NULL,
                    key_hash TEXT NOT NULL UNIQUE,
                    created_at BIGINT NOT NULL,
                    revoked_at BIGINT,
                    origins TEXT NOT NULL DEFAULT ''
                );
                CREATE TABLE source_quality (
                    source TEXT PRIMARY KEY,
                    events BIGINT NOT NULL,
                    accepted BIGINT NOT NULL,
                    rejected BIGINT NOT NULL,
                    duplicates BIGINT NOT NULL,
                    outliers BIGINT NOT NULL,
                    completeness_sum DOUBLE PRECISION NOT NULL,
                    last_event BIGINT
                );
                CREATE TABLE source_quality_daily (
                    source TEXT NOT NULL,
                    day BIGINT NOT NULL,
                    events BIGINT NOT NULL,
                    rejected BIGINT NOT NULL,
                    duplicates BIGINT NOT NULL,
                    completeness_sum DOUBLE PRECISION NOT NULL,
                    PRIMARY KEY (source, day)
                );
                CREATE TABLE experiment_counts (
                    experiment TEXT NOT NULL,
                    variant TEXT NOT NULL,
                    metric TEXT NOT NULL,
                    count BIGINT NOT NULL,
                    PRIMARY KEY (experiment, variant, metric)
                );
                CREATE TABLE promotion_bandits (
                    campaign TEXT PRIMARY KEY,
                    state BYTEA NOT NULL,
                    saved_at BIGINT NOT NULL
                );
                """),
        Migration(
            id: "v2.invalidations",
            sql: """
                CREATE TABLE veil_generation (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    value BIGINT NOT NULL
                );
                INSERT INTO veil_generation (id, value) VALUES (1, 0)
                """),
        Migration(
            id: "v3.models",
            sql: """
                CREATE TABLE model_parts (
                    version TEXT NOT NULL,
                    part INTEGER NOT NULL,
                    bytes BYTEA NOT NULL,
                    PRIMARY KEY (version, part)
                );
                CREATE TABLE published_model (
                    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
                    version TEXT NOT NULL,
                    trained_at BIGINT NOT NULL,
                    generation BIGINT NOT NULL,
                    parts INTEGER NOT NULL
                )
                """),
        Migration(
            id: "v4.audit_archive",
            sql: """
                CREATE TABLE audit_archive (
                    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    log TEXT NOT NULL,
                    seq BIGINT NOT NULL,
                    at BIGINT NOT NULL,
                    actor TEXT NOT NULL,
                    action TEXT NOT NULL,
                    outcome TEXT NOT NULL,
                    subject_token TEXT,
                    hash TEXT NOT NULL,
                    body BYTEA NOT NULL,
                    UNIQUE (log, seq)
                );
                CREATE INDEX audit_archive_subject ON audit_archive (subject_token, position) WHERE subject_token IS NOT NULL;
                CREATE INDEX audit_archive_actor ON audit_archive (actor, position);
                CREATE INDEX audit_archive_at ON audit_archive (at);
                CREATE TABLE audit_archive_heads (
                    log TEXT NOT NULL,
                    size BIGINT NOT NULL,
                    at BIGINT NOT NULL,
                    note TEXT NOT NULL,
                    PRIMARY KEY (log, size)
                )
                """),
    ]

    /// Hands the key store's schema and tables to `role` (idempotent): the gateway keeps its access as a member of the
    /// role, and a role that is not a member (a backup's) can neither read a key nor dump one.
    static func giveKeyStore(to role: String, _ store: PostgresStore) throws {
        guard PostgresRoleName.isValid(role), role != store.settings.user else {
            throw StorageError(
                .cannotOpen,
                "storage.key_role must name a role of its own: not a predefined pg_ role, not the gateway's role '\(store.settings.user)'")
        }
        try store.withConnection { connection in
            func run(_ query: PostgresQuery) throws -> PostgresQueryResult {
                try connection.answer(query, logger: store.logger, within: store.patience)
            }
            let member = try run(
                """
                SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = \(role)),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = \(role)) AND pg_has_role(current_user, \(role), 'USAGE')
                """
            ).rows.first?.decode((Bool, Bool).self)
            guard member?.0 == true else {
                throw StorageError(
                    .cannotOpen,
                    "storage.key_role names the role '\(role)', which does not exist: CREATE ROLE \(role) NOLOGIN; GRANT \(role) TO \(store.settings.user)"
                )
            }
            guard member?.1 == true else {
                throw StorageError(
                    .cannotOpen,
                    "the database role '\(store.settings.user)' is not a member of storage.key_role '\(role)': GRANT \(role) TO \(store.settings.user)"
                )
            }
            let schema = PostgresStore.keySchema
            // Handed over once: an ALTER takes the tables' exclusive lock, which a start must not take every time.
            let unowned = try run(
                """
                SELECT 'SCHEMA' FROM pg_namespace WHERE nspname = \(schema) AND nspowner::regrole::TEXT <> \(role)
                UNION ALL
                SELECT tablename FROM pg_tables WHERE schemaname = \(schema) AND tableowner <> \(role)
                """
            ).rows.map { try $0.decode(String.self) }
            if !unowned.isEmpty {
                let quoted = "\"\(role)\""
                _ = try run("BEGIN")
                do {
                    // Under the migration lock: gateways starting together hand it over once; a reader in the way makes
                    // this start fail within 2 s rather than queue every key read behind it.
                    _ = try run("SELECT pg_advisory_xact_lock(\(PostgresStore.migrationLock))")
                    _ = try run("SET LOCAL lock_timeout = '2s'")
                    for name in unowned {
                        _ = try run(
                            name == "SCHEMA"
                                ? "ALTER SCHEMA \(unescaped: schema) OWNER TO \(unescaped: quoted)"
                                : "ALTER TABLE \(unescaped: schema).\(unescaped: "\"" + name + "\"") OWNER TO \(unescaped: quoted)")
                    }
                    _ = try run("REVOKE ALL ON SCHEMA \(unescaped: schema) FROM PUBLIC")
                    _ = try run("COMMIT")
                } catch {
                    _ = try? run("ROLLBACK")
                    throw StorageError(
                        .migrationFailed, "handing the key store to storage.key_role '\(role)' failed: \(PostgresStore.describe(error))")
                }
            }
            // What the handover is for: no role that logs in reads a key unless it is one of the key role's members
            // (superusers aside, whom nothing stops). A grant someone made, default privileges, pg_read_all_data: refused.
            let readers = try run(
                """
                SELECT r.rolname FROM pg_roles r
                WHERE r.rolcanlogin AND NOT r.rolsuper AND NOT pg_has_role(r.oid, \(role), 'USAGE')
                    AND has_schema_privilege(r.oid, \(schema), 'USAGE')
                    AND EXISTS (SELECT 1 FROM pg_tables t WHERE t.schemaname = \(schema)
                        AND has_table_privilege(r.oid, format('%I.%I', t.schemaname, t.tablename), 'SELECT'))
                ORDER BY 1 LIMIT 5
                """
            ).rows.map { try $0.decode(String.self) }
            guard readers.isEmpty else {
                throw StorageError(
                    .cannotOpen,
                    "roles outside storage.key_role '\(role)' can read the key store (\(schema)): \(readers.joined(separator: ", ")); revoke their access (REVOKE … ON SCHEMA \(schema); not pg_read_all_data) or make them members of \(role)"
                )
            }
        }
    }

    static func migrate(_ store: PostgresStore) throws {
        try store.withConnection { connection in
            let logger = store.logger
            func run(_ query: PostgresQuery) throws -> PostgresQueryResult { try connection.query(query, logger: logger).wait() }
            _ = try run("SELECT pg_advisory_lock(\(PostgresStore.migrationLock))")
            defer { _ = try? run("SELECT pg_advisory_unlock(\(PostgresStore.migrationLock))") }
            _ = try run("CREATE TABLE IF NOT EXISTS veil_migrations (id TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            let applied = Set(try run("SELECT id FROM veil_migrations").rows.map { try $0.decode(String.self) })
            for migration in migrations where !applied.contains(migration.id) {
                do {
                    _ = try run("BEGIN")
                    // One statement at a time (the extended protocol takes one per query); statements end at ";" + newline.
                    for statement in migration.sql.components(separatedBy: ";\n") where !statement.allSatisfy(\.isWhitespace) {
                        _ = try run(PostgresQuery(unsafeSQL: statement))
                    }
                    _ = try run("INSERT INTO veil_migrations (id, applied_at) VALUES (\(migration.id), extract(epoch FROM now())::BIGINT)")
                    _ = try run("COMMIT")
                } catch {
                    _ = try? run("ROLLBACK")
                    throw StorageError(.migrationFailed, "migration \(migration.id) failed: \(PostgresStore.describe(error))")
                }
            }
        }
    }
}

/// The role names `storage.key_role` accepts: plain lower-case identifiers, so that one is never quoted wrongly into
/// a statement.
public enum PostgresRoleName {
    public static func isValid(_ name: String) -> Bool {
        guard !name.hasPrefix("pg_"), let first = name.utf8.first, (1...63).contains(name.utf8.count),
            !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first)
        else {
            return false
        }
        return name.utf8.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "_")
        }
    }
}
