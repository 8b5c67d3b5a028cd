//! The schema, as numbered migrations compiled into the binary, and how a database is
//! brought to the current one.
//!
//! The invariants are constraints: a serial is unique per environment (`serials`' key);
//! a name has at most one current certificate and one request (`certificates`' and
//! `requests`' keys); a certificate's serial is indexed (foreign key); a revocation names
//! an issued serial (foreign key); audit ids are one total order (key, and the one-row
//! `audit_head` every writer locks first, so ids are gapless and in commit order); a
//! certificate's `summary`, which listings read instead of its record, is cleared by a
//! trigger when the record changes without it (schema 4), so that it never contradicts
//! the record. Names are compared bytewise (`COLLATE "C"`), so listings page in the
//! order the sled store and the model use.

use postgres::error::SqlState;
use postgres::Client;

/// The migrations, in order; migration `i` brings the schema to version `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE certd_environments (
    name text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE certd_requests (
    env text COLLATE "C" NOT NULL,
    certname text COLLATE "C" NOT NULL,
    record text NOT NULL,
    -- When its order is free to work (Unix ms): pending requests with an order only.
    free_at bigint,
    PRIMARY KEY (env, certname)
);
CREATE INDEX certd_orders_due ON certd_requests (env, free_at, certname)
    WHERE free_at IS NOT NULL;
CREATE TABLE certd_serials (
    env text COLLATE "C" NOT NULL,
    serial bytea NOT NULL,
    certname text COLLATE "C" NOT NULL,
    PRIMARY KEY (env, serial)
);
CREATE TABLE certd_certificates (
    env text COLLATE "C" NOT NULL,
    certname text COLLATE "C" NOT NULL,
    serial bytea NOT NULL,
    record text NOT NULL,
    der bytea NOT NULL,
    PRIMARY KEY (env, certname),
    FOREIGN KEY (env, serial) REFERENCES certd_serials (env, serial)
);
CREATE TABLE certd_revocations (
    env text COLLATE "C" NOT NULL,
    serial bytea NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (env, serial),
    FOREIGN KEY (env, serial) REFERENCES certd_serials (env, serial)
);
CREATE INDEX certd_revocations_order ON certd_revocations (env, length(serial), serial);
CREATE TABLE certd_crls (
    env text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE certd_root_crl (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    record text NOT NULL
);
CREATE TABLE certd_audit (
    id bigint PRIMARY KEY CHECK (id > 0),
    at bigint NOT NULL,
    env text COLLATE "C" NOT NULL,
    certname text COLLATE "C" NOT NULL,
    kind text NOT NULL,
    detail text
);
CREATE TABLE certd_audit_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last bigint NOT NULL CHECK (last >= 0)
);
INSERT INTO certd_audit_head (last) VALUES (0);
CREATE TABLE certd_ca_keys (
    env text COLLATE "C" NOT NULL,
    purpose text NOT NULL,
    nonce bytea NOT NULL,
    sealed bytea NOT NULL,
    PRIMARY KEY (env, purpose)
);
"#,
    r#"
CREATE TABLE certd_nodes (
    id text COLLATE "C" PRIMARY KEY,
    seen_ms bigint NOT NULL,
    record text NOT NULL
);
CREATE INDEX certd_serials_by_name ON certd_serials (env, certname);
CREATE TABLE certd_leases (
    name text COLLATE "C" PRIMARY KEY,
    holder text NOT NULL,
    until_ms bigint NOT NULL,
    cursor bigint NOT NULL CHECK (cursor >= 0)
);
"#,
    r#"
CREATE TABLE certd_readers (
    reader text COLLATE "C" PRIMARY KEY,
    until_ms bigint NOT NULL,
    applied bigint NOT NULL CHECK (applied >= 0),
    pid integer NOT NULL
);
ALTER TABLE certd_audit_head ADD COLUMN fenced bigint NOT NULL DEFAULT 0;
ALTER TABLE certd_audit ADD COLUMN fenced boolean NOT NULL DEFAULT false;
CREATE TABLE certd_cert_fences (
    env text COLLATE "C" NOT NULL,
    certname text COLLATE "C" NOT NULL,
    id bigint NOT NULL,
    PRIMARY KEY (env, certname)
);
"#,
    r#"
ALTER TABLE certd_certificates ADD COLUMN summary bytea;
CREATE FUNCTION certd_summary_follows_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.summary := NULL;
    RETURN NEW;
END $$;
CREATE TRIGGER certd_summary_follows_record BEFORE UPDATE ON certd_certificates
    FOR EACH ROW
    WHEN (NEW.record IS DISTINCT FROM OLD.record AND NEW.summary IS NOT DISTINCT FROM OLD.summary)
    EXECUTE PROCEDURE certd_summary_follows_record();
"#,
    r#"
CREATE INDEX IF NOT EXISTS certd_audit_env ON certd_audit (env, id);
"#,
];

/// Storage settings: how rows are kept, not what they hold, so not migrations (a certd
/// of an earlier schema reads the tables the same, and a schema a DBA applied need not
/// be applied again for them). A certificate row of an RSA-4096 CA, or a request with a
/// few alternative names, is past the 2 KB at which PostgreSQL compresses a row and
/// moves part of it out: kept whole up to a page, storing one is one row and one index
/// entry, not two of each.
const STORAGE: &[(&str, &str)] = &[
    ("certd_certificates", "toast_tuple_target=8160"),
    ("certd_requests", "toast_tuple_target=8160"),
];

/// The statement that applies one of [`STORAGE`]'s settings.
fn storage_sql(table: &str, option: &str) -> String {
    format!("ALTER TABLE {table} SET ({option})")
}

/// The schema version this certd writes.
pub const PG_SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Any number, the same in every certd: the advisory lock two starting nodes take, so
/// that one migrates and the other then finds the work done.
const MIGRATION_LOCK: i64 = 0x6365_7274_6400_0001;

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS certd_schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);";

/// The schema as SQL, for a DBA to apply by hand: every migration after version `from`
/// (0: an empty database, `certd store schema`; the version a database holds, `certd
/// store schema --from N`, to bring it to this certd's), then the storage settings. It
/// first checks that the database holds version `from`, so that applied to another it
/// changes nothing. `None` for a version this certd does not know.
pub fn schema_sql(from: i32) -> Option<String> {
    if !(0..=PG_SCHEMA_VERSION).contains(&from) {
        return None;
    }
    let mut out = match from {
        0 => format!("-- certd's PostgreSQL schema, version {PG_SCHEMA_VERSION}"),
        PG_SCHEMA_VERSION => {
            format!("-- certd's PostgreSQL schema is at version {from}: storage settings only")
        }
        _ => format!("-- certd's PostgreSQL schema from version {from} to {PG_SCHEMA_VERSION}"),
    };
    out.push_str(
        ".\n-- Apply with psql as the owner of certd's tables (or a user that may create them\n\
         -- on an empty database), then grant certd's user SELECT, INSERT, UPDATE, DELETE\n\
         -- on all of them (again after an upgrade: a migration may add tables).\n\
         BEGIN;\n",
    );
    out.push_str(VERSION_TABLE);
    out.push('\n');
    out.push_str(&format!(
        "DO $check$ BEGIN\n  \
           IF (SELECT coalesce(max(version), 0) FROM certd_schema_version) <> {from} THEN\n    \
             RAISE EXCEPTION 'certd: this database does not hold schema version {from}; \
             `certd store schema --from N` prints what one at version N lacks';\n  \
           END IF;\n\
         END $check$;\n"
    ));
    for (i, m) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        out.push_str(&format!("-- migration {}\n", i + 1));
        out.push_str(m.trim());
        out.push('\n');
        out.push_str(&format!(
            "INSERT INTO certd_schema_version (version) VALUES ({});\n",
            i + 1
        ));
    }
    out.push_str("-- storage settings\n");
    for (table, option) in STORAGE {
        out.push_str(&format!("{};\n", storage_sql(table, option)));
    }
    out.push_str("COMMIT;\n");
    Some(out)
}

/// What a user that may not change the schema of a database at version `at` is told
/// (after its name): what it may not do, the server's `detail`, and what to have done.
fn privileges_text(at: &i32, detail: &str) -> String {
    if *at == 0 {
        format!("may not create certd's tables ({detail}); grant it CREATE on the schema, or have a DBA apply the output of `certd store schema`")
    } else {
        format!("may not migrate certd's tables from schema version {at} to {PG_SCHEMA_VERSION} ({detail}); make it their owner, or have a DBA apply the output of `certd store schema --from {at}`")
    }
}

/// Why the schema could not be brought to the current version.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database was migrated by a newer certd.
    #[error("the database's certd schema is version {found}, newer than this certd's {PG_SCHEMA_VERSION}; run a certd at least as new as the one that migrated it")]
    Newer {
        /// The version found.
        found: i32,
    },
    /// The user may not create the tables, or migrate them.
    #[error("the database user {user:?} {}", privileges_text(.at, .detail))]
    Privileges {
        /// The database user.
        user: String,
        /// The version the database holds.
        at: i32,
        /// The server's message.
        detail: String,
    },
    /// Any other failure.
    #[error("migrating the database: {0}")]
    Db(#[from] postgres::Error),
}

/// Brings the schema to [`PG_SCHEMA_VERSION`], under the advisory lock.
pub(super) fn migrate(client: &mut Client, user: &str) -> Result<i32, MigrateError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = migrate_locked(client, user);
    if result.is_ok() {
        set_storage(client);
    }
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result
}

/// Applies [`STORAGE`] where it is not set yet. A user that does not own the tables (a
/// schema a DBA applied) or a server without the setting keeps them as they are, and
/// the log names what to run.
fn set_storage(client: &mut Client) {
    for (table, option) in STORAGE {
        let set = client
            .query_one(
                "SELECT coalesce(reloptions, '{}') @> ARRAY[$2::text]
                 FROM pg_class WHERE oid = to_regclass($1)",
                &[table, option],
            )
            .map(|row| row.get::<_, bool>(0));
        let sql = storage_sql(table, option);
        let outcome = match set {
            Ok(true) => continue,
            Ok(false) => client.batch_execute(&sql),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            let detail = e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string());
            tracing::warn!(%detail, "{table} keeps its storage settings; a DBA may run: {sql}");
        }
    }
}

fn migrate_locked(client: &mut Client, user: &str) -> Result<i32, MigrateError> {
    let found = current_version(client)?;
    if found > PG_SCHEMA_VERSION {
        return Err(MigrateError::Newer { found });
    }
    if found == PG_SCHEMA_VERSION {
        return Ok(found);
    }
    // `at`: the version before the migration that failed (each commits on its own).
    let privileges = |e: postgres::Error, at: i32| match e.code() {
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => MigrateError::Privileges {
            user: user.to_owned(),
            at,
            detail: e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string()),
        },
        _ => MigrateError::Db(e),
    };
    client
        .batch_execute(VERSION_TABLE)
        .map_err(|e| privileges(e, found))?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i32 + 1;
        let mut tx = client.transaction()?;
        // A migration may take a while on a large table (an index on the audit log):
        // not bound by the session's statement timeout, and waiting for the writers of
        // nodes still running rather than failing the start.
        tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")?;
        tx.batch_execute(m)
            .map_err(|e| privileges(e, version - 1))?;
        tx.execute(
            "INSERT INTO certd_schema_version (version) VALUES ($1)",
            &[&version],
        )?;
        tx.commit()?;
        tracing::info!(version, "migrated the database schema");
    }
    Ok(PG_SCHEMA_VERSION)
}

/// The schema version the database holds (0: none).
pub(super) fn current_version(client: &mut Client) -> Result<i32, postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('certd_schema_version') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client.query_one(
        "SELECT coalesce(max(version), 0) FROM certd_schema_version",
        &[],
    )?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::{schema_sql, MIGRATIONS, PG_SCHEMA_VERSION};

    #[test]
    fn the_printed_schema_holds_the_migrations_after_the_version_given() {
        for from in 0..=PG_SCHEMA_VERSION {
            let sql = schema_sql(from).unwrap();
            for v in 1..=PG_SCHEMA_VERSION {
                assert_eq!(
                    sql.contains(&format!("-- migration {v}\n")),
                    v > from,
                    "from {from}, migration {v}"
                );
            }
            assert!(sql.contains(&format!("<> {from} THEN")), "{sql}");
            assert!(
                sql.starts_with("-- ") && sql.ends_with("COMMIT;\n"),
                "{sql}"
            );
        }
        assert_eq!(MIGRATIONS.len() as i32, PG_SCHEMA_VERSION);
        assert!(schema_sql(-1).is_none() && schema_sql(PG_SCHEMA_VERSION + 1).is_none());
    }
}
