//! The store's operations as SQL, each on one open transaction ([`Tx`]).
//!
//! Every writing transaction first locks the one row of `certd_audit_head`: writers take
//! turns, each reading what the one before committed (READ COMMITTED gives every
//! statement a fresh snapshot), so each operation decides exactly as the model decides
//! on its maps, and audit ids are handed out gapless in commit order. The outcome is
//! returned only after the commit.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement};

use super::lanes::{is_retryable, store_error, Conn};
use crate::ca::{Certname, EnvName, UnixTime};
use crate::store::schema::{decode_text, encode};
use crate::store::*;

/// How often a transaction two writers collided in is run again.
const RETRIES: usize = 5;

/// An audit event waiting for its id.
pub(super) struct Event {
    pub(super) at: UnixTime,
    pub(super) env: String,
    pub(super) certname: String,
    pub(super) kind: EventKind,
    pub(super) detail: Option<String>,
}

impl Event {
    pub(super) fn new(
        at: UnixTime,
        env: &EnvName,
        certname: &str,
        kind: EventKind,
        detail: Option<String>,
    ) -> Event {
        Event {
            at,
            env: env.to_string(),
            certname: certname.to_owned(),
            kind,
            detail,
        }
    }

    /// The kind as stored (its snake_case name).
    pub(super) fn kind_str(&self) -> String {
        kind_str(self.kind)
    }
}

/// The writers' lock: the one row every writing transaction locks first.
pub(super) const LOCK_SQL: &str = "SELECT last FROM certd_audit_head FOR UPDATE";

/// Appends `$1` events (the arrays `$2`..`$6`) with the next ids, in one statement; with
/// `$7`, they are fenced (`readers.rs`), and the last of them is the last fence of all.
pub(super) const APPEND_EVENTS_SQL: &str = "WITH head AS (UPDATE certd_audit_head
                   SET last = last + $1, fenced = CASE WHEN $7 THEN last + $1 ELSE fenced END
                   RETURNING last),
     appended AS (
         INSERT INTO certd_audit (id, at, env, certname, kind, detail, fenced)
         SELECT head.last - $1 + e.ord, e.at, e.env, e.certname, e.kind, e.detail, $7
         FROM head, unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
              WITH ORDINALITY AS e(at, env, certname, kind, detail, ord))
     SELECT last FROM head";

/// Makes `$3` the fence of each certificate row named (`$1`, `$2`): the id of its last
/// change that another node's cache may have to follow (`readers.rs`).
pub(super) const PUT_FENCES_SQL: &str = "INSERT INTO certd_cert_fences (env, certname, id)
     SELECT e, n, $3 FROM unnest($1::text[], $2::text[]) AS t(e, n)
     ON CONFLICT (env, certname) DO UPDATE SET id = EXCLUDED.id";

/// Wakes the other nodes' change feeds, at the commit (if there is one).
pub(super) const NOTIFY_SQL: &str = "SELECT pg_notify('certd_changes', '')";

/// Whether other nodes keep something in memory that an event of `kind` changes (the
/// TLS refusal set and the CRL; the environments): a transaction with one wakes their
/// feeds at once. Issuance does not notify (each notification costs every listener a
/// wake-up, ~20% of issuance throughput over 3 nodes: measured); its events reach the
/// feeds by their poll. (A write that changes a certificate another node may cache
/// notifies too, for its fence: `readers.rs`.)
fn wakes_peers(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Revoked | EventKind::Renewed | EventKind::Cleaned | EventKind::Environment
    )
}

/// What an operation fails with: the database's error (maybe retried), or a stored row
/// that does not decode.
pub(super) enum OpError {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for OpError {
    fn from(e: postgres::Error) -> Self {
        OpError::Pg(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

impl From<OpError> for StoreError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Pg(e) => store_error(e),
            OpError::Store(e) => e,
        }
    }
}

pub(super) type Op<T> = Result<T, OpError>;

/// A connection or transaction, its connection's prepared statements, and the audit
/// events a writing transaction appends.
pub(super) struct Tx<'a, C> {
    c: &'a mut C,
    stmts: &'a mut HashMap<&'static str, Statement>,
    events: Vec<Event>,
    /// Names whose certificate row, which another node may hold in its cache, was
    /// changed (`readers.rs`).
    changed: Vec<(String, String)>,
    /// The fence of each certificate row read (the id of its last such change): what
    /// every other node's cache must have followed before the outcome is answered.
    rests_on: u64,
    /// The last audit id appended.
    last: Option<u64>,
}

impl<'a, C> Tx<'a, C> {
    fn new(c: &'a mut C, stmts: &'a mut HashMap<&'static str, Statement>) -> Self {
        Tx {
            c,
            stmts,
            events: Vec::new(),
            changed: Vec::new(),
            rests_on: 0,
            last: None,
        }
    }
}

/// Runs `f` in a writing transaction (the writers' lock taken first) and commits; run
/// again when it collided with another writer.
pub(super) fn write<R>(
    conn: &mut Conn,
    f: impl FnMut(&mut Tx<'_, Client>) -> Op<R>,
) -> Result<R, StoreError> {
    write_fenced(conn, f).map(|(r, _)| r)
}

/// [`write`], and the audit id every other node's cache must have followed before anyone
/// hears of the outcome (`readers.rs`; 0: none): the transaction's last, when it changed a
/// certificate row that other nodes may hold, and at least the fence of every
/// certificate row it read (its outcome may rest on that change: a revocation found
/// done, a name found free).
pub(super) fn write_fenced<R>(
    conn: &mut Conn,
    mut f: impl FnMut(&mut Tx<'_, Client>) -> Op<R>,
) -> Result<(R, u64), StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match write_once(conn, &mut f) {
            Err(OpError::Pg(e)) if attempt < RETRIES && is_retryable(&e) => continue,
            r => return r.map_err(StoreError::from),
        }
    }
}

/// One attempt: `BEGIN` and the lock in one round trip, `f`, the audit events in one
/// statement, `COMMIT`; `ROLLBACK` on any error.
fn write_once<R>(
    conn: &mut Conn,
    f: &mut impl FnMut(&mut Tx<'_, Client>) -> Op<R>,
) -> Op<(R, u64)> {
    let Conn { client, stmts } = conn;
    if let Err(e) = client.batch_execute(&format!("BEGIN; {LOCK_SQL}")) {
        // The lock may have failed inside the transaction: leave none open.
        if !client.is_closed() {
            let _ = client.batch_execute("ROLLBACK");
        }
        return Err(e.into());
    }
    let body = {
        let mut tx = Tx::new(&mut *client, &mut *stmts);
        f(&mut tx).and_then(|r| {
            tx.append_events()?;
            Ok((r, tx.rests_on))
        })
    };
    match body {
        Ok(r) => {
            client.batch_execute("COMMIT")?;
            Ok(r)
        }
        Err(e) => {
            if !client.is_closed() {
                let _ = client.batch_execute("ROLLBACK");
            }
            Err(e)
        }
    }
}

/// Runs `f` on the connection, outside a transaction (each statement reads what was
/// committed when it began).
pub(super) fn read<R>(
    conn: &mut Conn,
    f: impl FnOnce(&mut Tx<'_, Client>) -> Op<R>,
) -> Result<R, StoreError> {
    let Conn { client, stmts } = conn;
    let mut tx = Tx::new(client, stmts);
    f(&mut tx).map_err(StoreError::from)
}

/// Runs `f` in one repeatable-read snapshot (a backup, a comparison).
pub(super) fn read_snapshot<R>(
    conn: &mut Conn,
    f: impl FnOnce(&mut Tx<'_, postgres::Transaction<'_>>) -> Op<R>,
) -> Result<R, StoreError> {
    let Conn { client, stmts } = conn;
    let run = || -> Op<R> {
        let mut t = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        // Whole tables: not bounded by the per-statement timeout of requests, nor by
        // the idle one while the caller takes each table's rows in.
        t.batch_execute(
            "SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0",
        )?;
        let r = {
            let mut tx = Tx::new(&mut t, stmts);
            f(&mut tx)?
        };
        t.commit()?;
        Ok(r)
    };
    run().map_err(StoreError::from)
}

impl<C: GenericClient> Tx<'_, C> {
    fn stmt(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.c.prepare(sql)?;
        self.stmts.insert(sql, s.clone());
        Ok(s)
    }

    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let s = self.stmt(sql)?;
        self.c.query(&s, params)
    }

    /// [`Tx::query`], each row handed to `f` as it arrives: a long answer is decoded
    /// while the server still sends it, not after.
    pub(super) fn each_row(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        mut f: impl FnMut(Row) -> Op<()>,
    ) -> Op<()> {
        use fallible_iterator::FallibleIterator;
        let s = self.stmt(sql)?;
        let mut rows = self.c.query_raw(&s, params.iter().copied())?;
        while let Some(row) = rows.next()? {
            f(row)?;
        }
        Ok(())
    }

    pub(super) fn opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let s = self.stmt(sql)?;
        self.c.query_opt(&s, params)
    }

    pub(super) fn exec(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let s = self.stmt(sql)?;
        self.c.execute(&s, params)
    }

    /// What was read rests on a change with this fence (none: no fence yet).
    fn rests_on_fence(&mut self, id: Option<i64>) {
        self.rests_on = self.rests_on.max(id.unwrap_or(0).max(0) as u64);
    }

    /// The fence every other node's cache must have followed before what was read or
    /// written here is answered (0: none).
    pub(super) fn rests_on(&self) -> u64 {
        self.rests_on
    }

    /// The certificate row of `name` changed in a way another node's cache must follow.
    fn changed_cert(&mut self, env: &EnvName, name: &str) {
        let key = (env.to_string(), name.to_owned());
        if !self.changed.contains(&key) {
            self.changed.push(key);
        }
    }

    fn log(&mut self, at: UnixTime, env: &EnvName, certname: &str, kind: EventKind) {
        self.log_detail(at, env, certname, kind, None);
    }

    pub(super) fn log_detail(
        &mut self,
        at: UnixTime,
        env: &EnvName,
        certname: &str,
        kind: EventKind,
        detail: Option<String>,
    ) {
        self.events
            .push(Event::new(at, env, certname, kind, detail));
    }

    /// Appends the transaction's events with the next ids (the writers' lock is held).
    fn append_events(&mut self) -> Result<(), postgres::Error> {
        if self.events.is_empty() {
            return Ok(());
        }
        let n = self.events.len() as i64;
        let ats: Vec<i64> = self.events.iter().map(|e| e.at).collect();
        let envs: Vec<String> = self.events.iter().map(|e| e.env.clone()).collect();
        let names: Vec<String> = self.events.iter().map(|e| e.certname.clone()).collect();
        let kinds: Vec<String> = self.events.iter().map(|e| kind_str(e.kind)).collect();
        let details: Vec<Option<String>> = self.events.iter().map(|e| e.detail.clone()).collect();
        let fenced = !self.changed.is_empty();
        let last: i64 = self
            .query(
                APPEND_EVENTS_SQL,
                &[&n, &ats, &envs, &names, &kinds, &details, &fenced],
            )?
            .first()
            .map(|r| r.get(0))
            .unwrap_or(0);
        let last = last.max(0) as u64;
        self.last = Some(last);
        if fenced {
            let envs: Vec<String> = self.changed.iter().map(|(e, _)| e.clone()).collect();
            let names: Vec<String> = self.changed.iter().map(|(_, n)| n.clone()).collect();
            self.exec(PUT_FENCES_SQL, &[&envs, &names, &(last as i64)])?;
            self.rests_on = self.rests_on.max(last);
        }
        if fenced || self.events.iter().any(|e| wakes_peers(e.kind)) {
            self.query(NOTIFY_SQL, &[])?;
        }
        Ok(())
    }
}

fn kind_str(kind: EventKind) -> String {
    json(&kind).trim_matches('"').to_owned()
}

fn kind_of(s: &str) -> Result<EventKind, StoreError> {
    decode_text("audit", &format!("\"{s}\""))
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> String {
    String::from_utf8(encode(v)).unwrap_or_default()
}

/// A certificate row's `record` and `summary` columns. The summary ([`CertSummary`] as
/// bytes, migration 4: what listings read) holds the fingerprints, so the record's JSON
/// leaves them out (~390 bytes of each row and of its WAL), and a read puts them back
/// ([`with_fingerprints`]). A record whose fingerprints are neither known nor to be
/// computed (a record from before they were stored, read without its DER) gets no
/// summary: it is listed from its record and DER.
pub(super) fn cert_columns(cert: &CertRecord) -> (String, Option<Vec<u8>>) {
    if cert.fingerprints.is_none() && cert.der.is_empty() {
        return (json(cert), None);
    }
    let summary = crate::store::summary::encode(&cert.summary());
    if summary.is_none() || cert.fingerprints.is_none() {
        return (json(cert), summary);
    }
    let bare = CertRecord {
        serial: cert.serial.clone(),
        der: Vec::new(),
        issued_at: cert.issued_at,
        not_before: cert.not_before,
        not_after: cert.not_after,
        dns_names: cert.dns_names.clone(),
        ip_addrs: cert.ip_addrs.clone(),
        authorization_extensions: cert.authorization_extensions.clone(),
        revocation: cert.revocation,
        fingerprints: None,
    };
    (json(&bare), summary)
}

/// `cert` read from its row, with the fingerprints its record left out put back: from
/// the row's `summary` ([`cert_columns`]), else computed from `der` (the row's DER, if
/// it was read). Without either they stay unknown, and whoever needs them computes
/// them from the DER.
pub(super) fn with_fingerprints(
    mut cert: CertRecord,
    summary: Option<&[u8]>,
    der: &[u8],
) -> CertRecord {
    if cert.fingerprints.is_none() {
        cert.fingerprints = summary
            .and_then(crate::store::summary::decode)
            .map(|s| s.fingerprints)
            .filter(|f| f.is_known())
            .or_else(|| (!der.is_empty()).then(|| StoredFingerprints::of_der(der)));
    }
    cert
}

/// A certificate as its row holds it: the record's JSON, its summary and its DER.
fn cert_of_row(text: &str, summary: Option<&[u8]>, der: Vec<u8>) -> Op<CertRecord> {
    let mut c = with_fingerprints(decode_text("certificates", text)?, summary, &der);
    c.der = der;
    Ok(c)
}

/// The JSON record in the first column of `row`, if there is a row.
fn record<T: serde::de::DeserializeOwned>(row: Option<Row>, tree: &str) -> Op<Option<T>> {
    match row {
        Some(r) => Ok(Some(decode_text(tree, r.get::<_, &str>(0))?)),
        None => Ok(None),
    }
}

fn certname(tree: &str, s: &str) -> Result<Certname, StoreError> {
    Certname::parse(s).map_err(|e| StoreError::Corrupt {
        tree: tree.to_owned(),
        detail: format!("stored name {s:?}: {e}"),
    })
}

// ---- requests ----

fn get_request<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &str,
) -> Op<Option<RequestRecord>> {
    let row = tx.opt(
        "SELECT record FROM certd_requests WHERE env = $1 AND certname = $2",
        &[&env.as_str(), &name],
    )?;
    record(row, "requests")
}

/// Stores a request, its due-time index column with it (the callers have read the
/// one it replaces).
fn put_request<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &str,
    rec: &RequestRecord,
) -> Op<()> {
    tx.exec(
        "INSERT INTO certd_requests (env, certname, record, free_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (env, certname) DO UPDATE SET record = EXCLUDED.record, free_at = EXCLUDED.free_at",
        &[&env.as_str(), &name, &json(rec), &rec.order_free_at()],
    )?;
    Ok(())
}

fn remove_request<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &str,
) -> Op<Option<RequestRecord>> {
    let row = tx.opt(
        "DELETE FROM certd_requests WHERE env = $1 AND certname = $2 RETURNING record",
        &[&env.as_str(), &name],
    )?;
    record(row, "requests")
}

pub(super) fn request<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
) -> Op<Option<RequestRecord>> {
    get_request(tx, env, name.as_str())
}

/// The request of `name` and whether it has a certificate, in one statement.
pub(super) fn request_and_has_certificate<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
) -> Op<(Option<RequestRecord>, bool)> {
    let row = tx.opt(
        "SELECT (SELECT record FROM certd_requests WHERE env = $1 AND certname = $2),
                EXISTS (SELECT 1 FROM certd_certificates WHERE env = $1 AND certname = $2),
                (SELECT id FROM certd_cert_fences WHERE env = $1 AND certname = $2)",
        &[&env.as_str(), &name.as_str()],
    )?;
    let Some(row) = row else {
        return Ok((None, false));
    };
    tx.rests_on_fence(row.get(2));
    let rec = match row.get::<_, Option<&str>>(0) {
        Some(text) => Some(decode_text("requests", text)?),
        None => None,
    };
    Ok((rec, row.get(1)))
}

pub(super) fn submit<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
    rec: &RequestRecord,
    rule: SubmitRule,
) -> Op<SubmitOutcome> {
    if let Some(c) = cert_record(tx, env, name.as_str())? {
        if rule.new_only {
            return Ok(SubmitOutcome::NotNew);
        }
        if !rule.allow_if_signed {
            return Ok(SubmitOutcome::CertificateExists {
                revoked: c.revocation.is_some(),
            });
        }
    }
    let prev = get_request(tx, env, name.as_str())?;
    if rule.new_only && prev.is_some() {
        return Ok(SubmitOutcome::NotNew);
    }
    let pending = prev
        .as_ref()
        .is_some_and(|p| p.state == RequestState::Requested);
    if pending && !rule.replace_pending {
        return Ok(SubmitOutcome::RequestPending);
    }
    put_request(tx, env, name.as_str(), rec)?;
    let (kind, detail) = rec.submit_event(pending);
    tx.log_detail(rec.submitted_at, env, name.as_str(), kind, detail);
    Ok(if pending {
        SubmitOutcome::Replaced
    } else {
        SubmitOutcome::Created
    })
}

pub(super) fn reject<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
    reason: &str,
    at: UnixTime,
) -> Op<bool> {
    let Some(mut r) = get_request(tx, env, name.as_str())? else {
        return Ok(false);
    };
    r.state = RequestState::Invalid {
        reason: reason.to_owned(),
        rule: None,
    };
    put_request(tx, env, name.as_str(), &r)?;
    tx.log(at, env, name.as_str(), EventKind::Rejected);
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn update<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
    expected: &RequestRecord,
    new: &RequestRecord,
    event: &Option<(EventKind, Option<String>)>,
    at: UnixTime,
) -> Op<bool> {
    if get_request(tx, env, name.as_str())?.as_ref() != Some(expected) {
        return Ok(false);
    }
    put_request(tx, env, name.as_str(), new)?;
    if let Some((kind, detail)) = event {
        tx.log_detail(at, env, name.as_str(), *kind, detail.clone());
    }
    Ok(true)
}

pub(super) fn cancel<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
    at: UnixTime,
) -> Op<bool> {
    let removed = remove_request(tx, env, name.as_str())?.is_some();
    if removed {
        tx.log(at, env, name.as_str(), EventKind::Canceled);
    }
    Ok(removed)
}

/// Before every certname (none is empty), for the first page of a keyset listing: one
/// statement for every page, whose cached generic plan keeps `certname > $2` an index
/// bound. (`$2 IS NULL OR certname > $2` made it a filter: the last page of 100,000
/// certificates read all of them, 86 ms.)
const FIRST_NAME: &str = "";

pub(super) fn requests<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    after: Option<&str>,
    limit: usize,
) -> Op<Vec<(Certname, RequestRecord)>> {
    let limit = limit.min(i64::MAX as usize) as i64;
    let rows = tx.query(
        "SELECT certname, record FROM certd_requests
         WHERE env = $1 AND certname > $2 ORDER BY certname LIMIT $3",
        &[&env.as_str(), &after.unwrap_or(FIRST_NAME), &limit],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name = certname("requests", r.get(0))?;
        out.push((name, decode_text("requests", r.get::<_, &str>(1))?));
    }
    Ok(out)
}

pub(super) fn count_requests<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    up_to: usize,
) -> Op<usize> {
    let up_to = up_to.min(i64::MAX as usize) as i64;
    let row = tx.opt(
        "SELECT count(*) FROM
           (SELECT 1 FROM certd_requests WHERE env = $1 LIMIT $2) AS held",
        &[&env.as_str(), &up_to],
    )?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as usize))
}

pub(super) fn due_orders<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    until_ms: i64,
    after: Option<(i64, &str)>,
    limit: usize,
) -> Op<DueOrders> {
    let (after_at, after_name) = after.unwrap_or((i64::MIN, FIRST_NAME));
    // One row beyond the page tells when the next order becomes free.
    let fetch = limit.saturating_add(1).min(i64::MAX as usize) as i64;
    let rows = tx.query(
        "SELECT free_at, certname, record FROM certd_requests
         WHERE env = $1 AND free_at IS NOT NULL
           AND (free_at, certname) > ($2, $3::text COLLATE \"C\")
         ORDER BY free_at, certname LIMIT $4",
        &[&env.as_str(), &after_at, &after_name, &fetch],
    )?;
    let mut out = DueOrders::default();
    for r in rows {
        let at: i64 = r.get(0);
        if at > until_ms || out.due.len() >= limit {
            out.next_ms = Some(at);
            break;
        }
        let name = certname("requests", r.get(1))?;
        out.due
            .push((name, decode_text("requests", r.get::<_, &str>(2))?));
    }
    Ok(out)
}

// ---- certificates ----

/// The name's certificate row; the transaction rests on its fence from now on.
fn cert_record<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &str,
) -> Op<Option<CertRecord>> {
    let row = tx.opt(
        "SELECT c.record, c.summary,
                (SELECT id FROM certd_cert_fences WHERE env = $1 AND certname = $2),
                CASE WHEN c.summary IS NULL THEN c.der END
         FROM (SELECT 1) AS one
         LEFT JOIN certd_certificates c ON c.env = $1 AND c.certname = $2",
        &[&env.as_str(), &name],
    )?;
    let Some(row) = row else { return Ok(None) };
    tx.rests_on_fence(row.get(2));
    // The DER only where no summary holds the fingerprints: a record rewritten from
    // this one (revoked) gets its summary back.
    match row.get::<_, Option<&str>>(0) {
        Some(text) => Ok(Some(with_fingerprints(
            decode_text("certificates", text)?,
            row.get(1),
            row.get::<_, Option<&[u8]>>(3).unwrap_or_default(),
        ))),
        None => Ok(None),
    }
}

fn serial_taken<C: GenericClient>(tx: &mut Tx<'_, C>, env: &EnvName, serial: &[u8]) -> Op<bool> {
    Ok(tx
        .opt(
            "SELECT 1 FROM certd_serials WHERE env = $1 AND serial = $2",
            &[&env.as_str(), &serial],
        )?
        .is_some())
}

/// Indexes the serial and makes `cert` the name's certificate (`replaces`: in place of
/// one stored).
fn store_cert<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &str,
    cert: &CertRecord,
    replaces: bool,
) -> Op<()> {
    if replaces {
        tx.changed_cert(env, name);
    }
    let (record, summary) = cert_columns(cert);
    tx.exec(
        "INSERT INTO certd_serials (env, serial, certname) VALUES ($1, $2, $3)",
        &[&env.as_str(), &cert.serial, &name],
    )?;
    tx.exec(
        "INSERT INTO certd_certificates (env, certname, serial, record, der, summary)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (env, certname) DO UPDATE
         SET serial = EXCLUDED.serial, record = EXCLUDED.record, der = EXCLUDED.der,
             summary = EXCLUDED.summary",
        &[
            &env.as_str(),
            &name,
            &cert.serial,
            &record,
            &cert.der,
            &summary,
        ],
    )?;
    Ok(())
}

pub(super) fn issue<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
    expected: &RequestRecord,
    cert: &CertRecord,
) -> Op<IssueOutcome> {
    let mut replaces = false;
    let outcome = match get_request(tx, env, name.as_str())? {
        Some(r) if r.state == RequestState::Requested => {
            let current = cert_record(tx, env, name.as_str())?;
            replaces = current.is_some();
            if r != *expected {
                IssueOutcome::RequestChanged
            } else if current.is_some_and(|c| c.revocation.is_none()) {
                IssueOutcome::AlreadySigned
            } else if serial_taken(tx, env, &cert.serial)? {
                IssueOutcome::SerialTaken
            } else {
                IssueOutcome::Issued
            }
        }
        _ => IssueOutcome::NoRequest,
    };
    if outcome == IssueOutcome::Issued {
        remove_request(tx, env, name.as_str())?;
        store_cert(tx, env, name.as_str(), cert, replaces)?;
        tx.log(cert.issued_at, env, name.as_str(), EventKind::Issued);
    }
    Ok(outcome)
}

fn revoke_in<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &str,
    mut cert: CertRecord,
    revocation: Revocation,
) -> Op<()> {
    cert.revocation = Some(revocation);
    tx.changed_cert(env, name);
    let (record, summary) = cert_columns(&cert);
    tx.exec(
        "UPDATE certd_certificates SET record = $3, summary = $4
         WHERE env = $1 AND certname = $2",
        &[&env.as_str(), &name, &record, &summary],
    )?;
    let revoked = RevokedSerial {
        serial: cert.serial.clone(),
        revocation,
    };
    tx.exec(
        "INSERT INTO certd_revocations (env, serial, record) VALUES ($1, $2, $3)",
        &[&env.as_str(), &cert.serial, &json(&revoked)],
    )?;
    tx.log(revocation.revoked_at, env, name, EventKind::Revoked);
    Ok(())
}

pub(super) fn renew<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
    old_serial: &[u8],
    cert: &CertRecord,
) -> Op<RenewOutcome> {
    let current = cert_record(tx, env, name.as_str())?
        .filter(|c| c.serial == old_serial && c.revocation.is_none());
    let Some(current) = current else {
        return Ok(RenewOutcome::NotCurrent);
    };
    if serial_taken(tx, env, &cert.serial)? {
        return Ok(RenewOutcome::SerialTaken);
    }
    let superseded = Revocation {
        revoked_at: cert.issued_at,
        reason: crate::ca::RevocationReason::Superseded,
    };
    revoke_in(tx, env, name.as_str(), current, superseded)?;
    store_cert(tx, env, name.as_str(), cert, true)?;
    tx.log(cert.issued_at, env, name.as_str(), EventKind::Renewed);
    Ok(RenewOutcome::Renewed)
}

pub(super) fn certificate<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
) -> Op<Option<CertRecord>> {
    let row = tx.opt(
        "SELECT c.record, c.der, (SELECT id FROM certd_cert_fences WHERE env = $1 AND certname = $2),
                c.summary
         FROM (SELECT 1) AS one
         LEFT JOIN certd_certificates c ON c.env = $1 AND c.certname = $2",
        &[&env.as_str(), &name.as_str()],
    )?;
    let Some(r) = row else { return Ok(None) };
    tx.rests_on_fence(r.get(2));
    Ok(match r.get::<_, Option<&str>>(0) {
        Some(text) => Some(cert_of_row(text, r.get(3), r.get(1))?),
        None => None,
    })
}

/// The transaction rests on the last fence of all (`readers.rs`), read after what it
/// must cover (a listing of many certificates).
fn rests_on_all<C: GenericClient>(tx: &mut Tx<'_, C>) -> Op<()> {
    let row = tx.opt("SELECT fenced FROM certd_audit_head", &[])?;
    tx.rests_on_fence(row.map(|r| r.get::<_, i64>(0)));
    Ok(())
}

pub(super) fn certname_by_serial<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    serial: &[u8],
) -> Op<Option<Certname>> {
    let row = tx.opt(
        "SELECT certname FROM certd_serials WHERE env = $1 AND serial = $2",
        &[&env.as_str(), &serial],
    )?;
    Ok(match row {
        Some(r) => Some(certname("serials", r.get(0))?),
        None => None,
    })
}

pub(super) fn revoke<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
    revocation: Revocation,
) -> Op<RevokeOutcome> {
    Ok(match cert_record(tx, env, name.as_str())? {
        None => RevokeOutcome::NotFound,
        Some(c) if c.revocation.is_some() => RevokeOutcome::AlreadyRevoked,
        Some(c) => {
            let serial = c.serial.clone();
            revoke_in(tx, env, name.as_str(), c, revocation)?;
            RevokeOutcome::Revoked { serial }
        }
    })
}

pub(super) fn clean<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
    revocation: Revocation,
    certified: bool,
) -> Op<CleanOutcome> {
    let cert = cert_record(tx, env, name.as_str())?;
    if certified && cert.is_none() {
        return Ok(CleanOutcome::NotFound);
    }
    let had_request = remove_request(tx, env, name.as_str())?.is_some();
    if cert.is_none() && !had_request {
        return Ok(CleanOutcome::NotFound);
    }
    let mut revoked = None;
    if let Some(c) = cert {
        if c.revocation.is_none() {
            let serial = c.serial.clone();
            revoke_in(tx, env, name.as_str(), c, revocation)?;
            revoked = Some(serial);
        }
        tx.changed_cert(env, name.as_str());
        tx.exec(
            "DELETE FROM certd_certificates WHERE env = $1 AND certname = $2",
            &[&env.as_str(), &name.as_str()],
        )?;
    }
    tx.log(
        revocation.revoked_at,
        env,
        name.as_str(),
        EventKind::Cleaned,
    );
    Ok(CleanOutcome::Cleaned { revoked })
}

pub(super) fn certificates<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    after: Option<&str>,
    limit: usize,
) -> Op<Vec<(Certname, CertSummary)>> {
    let limit = limit.min(i64::MAX as usize) as i64;
    let mut out = Vec::with_capacity(limit.min(4096) as usize);
    // Rows listed from the record and the DER: those whose record and summary give no
    // fingerprints (from before they were stored, or whose summary was cleared), and
    // any whose summary does not decode.
    let mut reread = Vec::new();
    // The record's JSON only for a row without a summary (written before migration 4,
    // or whose record changed without it).
    tx.each_row(
        "SELECT certname, summary, CASE WHEN summary IS NULL THEN record END
         FROM certd_certificates
         WHERE env = $1 AND certname > $2 ORDER BY certname LIMIT $3",
        &[&env.as_str(), &after.unwrap_or(FIRST_NAME), &limit],
        |r| {
            let name = certname("certificates", r.get(0))?;
            let summary: CertSummary = match r.get::<_, Option<&[u8]>>(1) {
                Some(bytes) => crate::store::summary::decode(bytes).unwrap_or_else(|| {
                    tracing::warn!(%env, certname = %name, "a certificate's summary does not decode; listed from its record");
                    CertSummary::default()
                }),
                None => decode_text("certificates", r.get::<_, &str>(2))?,
            };
            if !summary.fingerprints.is_known() {
                reread.push(out.len());
            }
            out.push((name, summary));
            Ok(())
        },
    )?;
    // A row removed since the page was read (each statement sees what was committed
    // before it) is not listed.
    let mut gone = Vec::new();
    for i in reread {
        let (name, summary) = &mut out[i];
        match certificate(tx, env, name)? {
            Some(full) => *summary = full.summary(),
            None => gone.push(i),
        }
    }
    for i in gone.into_iter().rev() {
        out.remove(i);
    }
    rests_on_all(tx)?;
    Ok(out)
}

pub(super) fn revoked_serials<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
) -> Op<Vec<RevokedSerial>> {
    // Decoded row by row: a start with 100,000 revocations never holds them all twice.
    let mut out = Vec::new();
    tx.each_row(
        "SELECT record FROM certd_revocations WHERE env = $1 ORDER BY length(serial), serial",
        &[&env.as_str()],
        |r| {
            out.push(decode_text("revocations", r.get::<_, &str>(0))?);
            Ok(())
        },
    )?;
    Ok(out)
}

pub(super) fn revoked_serials_of<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    name: &Certname,
) -> Op<Vec<RevokedSerial>> {
    let rows = tx.query(
        "SELECT r.record FROM certd_serials s
         JOIN certd_revocations r ON r.env = s.env AND r.serial = s.serial
         WHERE s.env = $1 AND s.certname = $2
         ORDER BY length(r.serial), r.serial",
        &[&env.as_str(), &name.as_str()],
    )?;
    rows.iter()
        .map(|r| decode_text("revocations", r.get::<_, &str>(0)).map_err(OpError::Store))
        .collect()
}

/// Upserts `node`, seen now by the database's clock, and returns the nodes seen within
/// `recent_ms` of it.
pub(super) fn heartbeat<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    node: &NodeRecord,
    recent_ms: i64,
) -> Op<Vec<NodeRecord>> {
    let now_ms: i64 = tx
        .query(
            "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint",
            &[],
        )?
        .first()
        .map(|r| r.get(0))
        .unwrap_or(0);
    let mine = NodeRecord {
        seen_ms: now_ms,
        ..node.clone()
    };
    // The row of the id is this process's unless another process beat under it
    // within `recent_ms` (a node id shared by mistake, or this node's predecessor
    // before a restart): then this one beats beside it, under `id#instance`, so that
    // every node sees both.
    let record = json(&mine);
    let took = tx.exec(
        "INSERT INTO certd_nodes AS n (id, seen_ms, record) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET seen_ms = EXCLUDED.seen_ms, record = EXCLUDED.record
         WHERE n.seen_ms < $4
            OR (n.record::jsonb ->> 'instance') IS NOT DISTINCT FROM $5",
        &[
            &mine.id,
            &now_ms,
            &record,
            &(now_ms - recent_ms),
            &mine.instance,
        ],
    )?;
    let beside = format!("{}#{}", mine.id, mine.instance);
    if took == 0 {
        tx.exec(
            "INSERT INTO certd_nodes (id, seen_ms, record) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET seen_ms = EXCLUDED.seen_ms, record = EXCLUDED.record",
            &[&beside, &now_ms, &record],
        )?;
    } else {
        tx.exec("DELETE FROM certd_nodes WHERE id = $1", &[&beside])?;
    }
    let rows = tx.query(
        "SELECT record FROM certd_nodes WHERE seen_ms >= $1 ORDER BY id",
        &[&(now_ms - recent_ms)],
    )?;
    rows.iter()
        .map(|r| decode_text("nodes", r.get::<_, &str>(0)).map_err(OpError::Store))
        .collect()
}

/// The database's clock, Unix ms (a macro, so that statements stay literals).
macro_rules! now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

fn lease_of(r: &Row) -> Lease {
    Lease {
        name: r.get(0),
        holder: r.get(1),
        until_ms: r.get(2),
        cursor: r.get::<_, i64>(3).max(0) as u64,
    }
}

/// One statement: the lease is granted when free, expired or the holder's.
pub(super) fn take_lease<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    name: &str,
    holder: &str,
    ttl_ms: i64,
    cursor: u64,
) -> Op<Option<Lease>> {
    let rows = tx.query(
        concat!(
            "INSERT INTO certd_leases AS l (name, holder, until_ms, cursor)
             VALUES ($1, $2, ",
            now_ms!(),
            " + $3, $4)
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until_ms = EXCLUDED.until_ms
             WHERE l.holder = EXCLUDED.holder OR l.until_ms < ",
            now_ms!(),
            " RETURNING name, holder, until_ms, cursor"
        ),
        &[&name, &holder, &ttl_ms, &(cursor as i64)],
    )?;
    Ok(rows.first().map(lease_of))
}

pub(super) fn advance_lease<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    name: &str,
    holder: &str,
    cursor: u64,
) -> Op<bool> {
    let n = tx.exec(
        concat!(
            "UPDATE certd_leases SET cursor = $3
             WHERE name = $1 AND holder = $2 AND until_ms >= ",
            now_ms!()
        ),
        &[&name, &holder, &(cursor as i64)],
    )?;
    Ok(n == 1)
}

pub(super) fn leases<C: GenericClient>(tx: &mut Tx<'_, C>) -> Op<Vec<Lease>> {
    let rows = tx.query(
        "SELECT name, holder, until_ms, cursor FROM certd_leases ORDER BY name",
        &[],
    )?;
    Ok(rows.iter().map(lease_of).collect())
}

// ---- environments, CRLs, audit ----

pub(super) fn put_environment<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    rec: &EnvRecord,
    at: UnixTime,
) -> Op<()> {
    tx.exec(
        "INSERT INTO certd_environments (name, record) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
        &[&env.as_str(), &json(rec)],
    )?;
    tx.log(at, env, "", EventKind::Environment);
    Ok(())
}

pub(super) fn environments<C: GenericClient>(tx: &mut Tx<'_, C>) -> Op<Vec<(EnvName, EnvRecord)>> {
    let rows = tx.query(
        "SELECT name, record FROM certd_environments ORDER BY name",
        &[],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: &str = r.get(0);
        let env = EnvName::parse(name).map_err(|e| StoreError::Corrupt {
            tree: "environments".into(),
            detail: format!("stored name {name:?}: {e}"),
        })?;
        out.push((env, decode_text("environments", r.get::<_, &str>(1))?));
    }
    Ok(out)
}

pub(super) fn crl<C: GenericClient>(tx: &mut Tx<'_, C>, env: &EnvName) -> Op<Option<CrlRecord>> {
    let row = tx.opt(
        "SELECT record FROM certd_crls WHERE env = $1",
        &[&env.as_str()],
    )?;
    record(row, "crls")
}

pub(super) fn put_crl<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    crl: &CrlRecord,
) -> Op<bool> {
    let number = crl.number as i64;
    let n = tx.exec(
        "INSERT INTO certd_crls (env, record) VALUES ($1, $2)
         ON CONFLICT (env) DO UPDATE SET record = EXCLUDED.record
         WHERE (certd_crls.record::jsonb->>'number')::bigint < $3",
        &[&env.as_str(), &json(crl), &number],
    )?;
    Ok(n == 1)
}

pub(super) fn root_crl<C: GenericClient>(tx: &mut Tx<'_, C>) -> Op<Option<CrlRecord>> {
    let row = tx.opt("SELECT record FROM certd_root_crl", &[])?;
    record(row, "root_crl")
}

pub(super) fn put_root_crl<C: GenericClient>(tx: &mut Tx<'_, C>, crl: &CrlRecord) -> Op<()> {
    tx.exec(
        "INSERT INTO certd_root_crl (only_row, record) VALUES (true, $1)
         ON CONFLICT (only_row) DO UPDATE SET record = EXCLUDED.record",
        &[&json(crl)],
    )?;
    Ok(())
}

/// The audit events after `after`, at most `limit`: of every environment, or of `env`
/// alone (by the index on (env, id), migration 5).
pub(super) fn audit<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: Option<&str>,
    after: u64,
    limit: usize,
) -> Op<Vec<AuditEvent>> {
    let after = after.min(i64::MAX as u64) as i64;
    let limit = limit.min(i64::MAX as usize) as i64;
    let rows = match env {
        None => tx.query(
            "SELECT id, at, env, certname, kind, detail, fenced FROM certd_audit
             WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit],
        )?,
        Some(env) => tx.query(
            "SELECT id, at, env, certname, kind, detail, fenced FROM certd_audit
             WHERE env = $3 AND id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit, &env],
        )?,
    };
    events_of(tx, rows)
}

fn events_of<C: GenericClient>(tx: &mut Tx<'_, C>, rows: Vec<Row>) -> Op<Vec<AuditEvent>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        // A change other nodes' caches may still be following: the page rests on it.
        if r.get::<_, bool>(6) {
            tx.rests_on_fence(Some(r.get(0)));
        }
        out.push(AuditEvent {
            id: r.get::<_, i64>(0) as u64,
            at: r.get(1),
            env: r.get(2),
            certname: r.get(3),
            kind: kind_of(r.get(4))?,
            detail: r.get(5),
        });
    }
    Ok(out)
}

pub(super) fn last_event_id<C: GenericClient>(tx: &mut Tx<'_, C>) -> Op<u64> {
    let row = tx.opt("SELECT last FROM certd_audit_head", &[])?;
    Ok(row.map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
}

/// Everything, read in the caller's transaction.
pub(super) fn snapshot<C: GenericClient>(tx: &mut Tx<'_, C>) -> Op<Snapshot> {
    let mut s = Snapshot {
        root_crl: root_crl(tx)?,
        ..Snapshot::default()
    };
    for (env, rec) in environments(tx)? {
        s.environments.insert(env.to_string(), rec);
    }
    let mut envs = std::collections::BTreeSet::new();
    for r in tx.query(
        "SELECT env FROM certd_requests UNION SELECT env FROM certd_serials
         UNION SELECT env FROM certd_certificates UNION SELECT env FROM certd_crls",
        &[],
    )? {
        envs.insert(r.get::<_, String>(0));
    }
    for name in envs {
        let env = EnvName::parse(&name).map_err(|e| StoreError::Corrupt {
            tree: "environments".into(),
            detail: e.to_string(),
        })?;
        let mut e = EnvSnapshot::default();
        for (n, r) in requests(tx, &env, None, usize::MAX)? {
            if let Some(at) = r.order_free_at() {
                e.orders_due.insert((at, n.to_string()));
            }
            e.requests.insert(n.to_string(), r);
        }
        for r in tx.query(
            "SELECT certname, record, der, summary FROM certd_certificates WHERE env = $1",
            &[&env.as_str()],
        )? {
            let c = cert_of_row(r.get(1), r.get(3), r.get(2))?;
            e.certificates.insert(r.get(0), c);
        }
        for r in tx.query(
            "SELECT serial, certname FROM certd_serials WHERE env = $1",
            &[&env.as_str()],
        )? {
            e.serials.insert(r.get(0), r.get(1));
        }
        e.revoked = revoked_serials(tx, &env)?;
        e.crl = crl(tx, &env)?;
        s.envs.insert(name, e);
    }
    s.audit = audit(tx, None, 0, usize::MAX)?;
    Ok(s)
}

/// How many rows one statement of an import writes.
const IMPORT_CHUNK: usize = 1000;

/// Writes a snapshot into empty tables (the caller holds the writers' lock).
pub(super) fn import<C: GenericClient>(tx: &mut Tx<'_, C>, snap: &Snapshot) -> Op<()> {
    tx.c.batch_execute(
        "SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0",
    )?;
    let taken = tx.opt(
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM certd_environments)
            OR EXISTS (SELECT 1 FROM certd_requests) OR EXISTS (SELECT 1 FROM certd_serials)
            OR EXISTS (SELECT 1 FROM certd_crls) OR EXISTS (SELECT 1 FROM certd_root_crl)
            OR EXISTS (SELECT 1 FROM certd_audit)",
        &[],
    )?;
    if taken.is_some() {
        return Err(StoreError::NotEmpty.into());
    }
    for (name, rec) in &snap.environments {
        tx.exec(
            "INSERT INTO certd_environments (name, record) VALUES ($1, $2)",
            &[name, &json(rec)],
        )?;
    }
    if let Some(crl) = &snap.root_crl {
        put_root_crl(tx, crl)?;
    }
    for (env, e) in &snap.envs {
        let requests: Vec<(&String, &RequestRecord)> = e.requests.iter().collect();
        for chunk in requests.chunks(IMPORT_CHUNK) {
            let names: Vec<&str> = chunk.iter().map(|(n, _)| n.as_str()).collect();
            let recs: Vec<String> = chunk.iter().map(|(_, r)| json(*r)).collect();
            let free: Vec<Option<i64>> = chunk.iter().map(|(_, r)| r.order_free_at()).collect();
            tx.exec(
                "INSERT INTO certd_requests (env, certname, record, free_at)
                 SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[])",
                &[env, &names, &recs, &free],
            )?;
        }
        let serials: Vec<(&Vec<u8>, &String)> = e.serials.iter().collect();
        for chunk in serials.chunks(IMPORT_CHUNK) {
            let s: Vec<&[u8]> = chunk.iter().map(|(s, _)| s.as_slice()).collect();
            let n: Vec<&str> = chunk.iter().map(|(_, n)| n.as_str()).collect();
            tx.exec(
                "INSERT INTO certd_serials (env, serial, certname)
                 SELECT $1, * FROM unnest($2::bytea[], $3::text[])",
                &[env, &s, &n],
            )?;
        }
        let certs: Vec<(&String, &CertRecord)> = e.certificates.iter().collect();
        for chunk in certs.chunks(IMPORT_CHUNK) {
            let names: Vec<&str> = chunk.iter().map(|(n, _)| n.as_str()).collect();
            let serials: Vec<&[u8]> = chunk.iter().map(|(_, c)| c.serial.as_slice()).collect();
            let (recs, sums): (Vec<String>, Vec<Option<Vec<u8>>>) =
                chunk.iter().map(|(_, c)| cert_columns(c)).unzip();
            let ders: Vec<&[u8]> = chunk.iter().map(|(_, c)| c.der.as_slice()).collect();
            tx.exec(
                "INSERT INTO certd_certificates (env, certname, serial, record, der, summary)
                 SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::text[], $5::bytea[],
                    $6::bytea[])",
                &[env, &names, &serials, &recs, &ders, &sums],
            )?;
        }
        for chunk in e.revoked.chunks(IMPORT_CHUNK) {
            let s: Vec<&[u8]> = chunk.iter().map(|r| r.serial.as_slice()).collect();
            let recs: Vec<String> = chunk.iter().map(json).collect();
            tx.exec(
                "INSERT INTO certd_revocations (env, serial, record)
                 SELECT $1, * FROM unnest($2::bytea[], $3::text[])",
                &[env, &s, &recs],
            )?;
        }
        if let Some(crl) = &e.crl {
            tx.exec(
                "INSERT INTO certd_crls (env, record) VALUES ($1, $2)",
                &[env, &json(crl)],
            )?;
        }
    }
    for chunk in snap.audit.chunks(IMPORT_CHUNK) {
        let ids: Vec<i64> = chunk.iter().map(|e| e.id as i64).collect();
        let ats: Vec<i64> = chunk.iter().map(|e| e.at).collect();
        let envs: Vec<&str> = chunk.iter().map(|e| e.env.as_str()).collect();
        let names: Vec<&str> = chunk.iter().map(|e| e.certname.as_str()).collect();
        let kinds: Vec<String> = chunk.iter().map(|e| kind_str(e.kind)).collect();
        let details: Vec<Option<&str>> = chunk.iter().map(|e| e.detail.as_deref()).collect();
        tx.exec(
            "INSERT INTO certd_audit (id, at, env, certname, kind, detail)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])",
            &[&ids, &ats, &envs, &names, &kinds, &details],
        )?;
    }
    let last = snap.audit.last().map(|e| e.id as i64).unwrap_or(0);
    tx.exec("UPDATE certd_audit_head SET last = $1", &[&last])?;
    Ok(())
}
