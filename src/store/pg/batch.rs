//! Autosigned submissions: a batch in one transaction, in two round trips. The
//! committer's connection is driven asynchronously (tokio-postgres) so that statements
//! are pipelined: `BEGIN`, the writers' lock and the primary-key lookups of what the
//! batch touches go in one flush; the outcomes are decided in order on those rows
//! (exactly as one submission after another would decide); the writes of every change,
//! the audit events and `COMMIT` go in the second. Every statement is a primary-key
//! lookup or an insert from arrays, so a generic plan suits it once its tables hold some
//! rows (one made while they were nearly empty is replaced: `committer.rs`,
//! `REPLAN_AT`), and the connection takes generic plans only (a join with the unnested
//! names, planned anew each time to stay safe, spent 43% of the server's CPU in the
//! planner). A failed statement aborts the transaction, and the `COMMIT` after it then
//! rolls it back; one the client refused before sending it turns the `COMMIT` into a
//! `ROLLBACK` ([`commit_after`]). Each statement waits for the one before it, so the
//! lock is held before the read's snapshot is taken.
//!
//! Measured, ECDSA CA, 8 keep-alive agents: one statement per submission and step, 827
//! certificates/s against sled's 3,964/s; one read and one write per batch but a round
//! trip each (five), 1,443-1,551/s; pipelined (two), see the README.

use std::collections::{BTreeMap, BTreeSet};

use std::future::Future;
use std::pin::Pin;

use futures_util::future::{join, join3, join_all, try_join3};
use postgres_openssl::MakeTlsConnector;
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::committer::Submission;
use super::lanes::is_retryable;
use super::ops::{
    cert_columns, json, Event, OpError, APPEND_EVENTS_SQL, LOCK_SQL, NOTIFY_SQL, PUT_FENCES_SQL,
};
use crate::ca::EnvName;
use crate::store::schema::decode_text;
use crate::store::{
    CertRecord, EventKind, IssueOutcome, RequestRecord, RequestState, StoreError,
    SubmitIssueOutcome, SubmitOutcome,
};

/// How often a batch that collided with another writer is run again.
const RETRIES: usize = 5;

/// A submission's name's request and certificate, whether its serial is taken, and the
/// name's fence (`readers.rs`): four primary-key lookups in one statement.
const LOOKUP_SQL: &str = "SELECT
       (SELECT record FROM certd_requests WHERE env = $1 AND certname = $2),
       (SELECT record FROM certd_certificates WHERE env = $1 AND certname = $2),
       EXISTS (SELECT 1 FROM certd_serials WHERE env = $1 AND serial = $3),
       (SELECT id FROM certd_cert_fences WHERE env = $1 AND certname = $2)";
const DELETE_REQUEST_SQL: &str = "DELETE FROM certd_requests WHERE env = $1 AND certname = $2";
const PUT_REQUESTS_SQL: &str = "INSERT INTO certd_requests (env, certname, record, free_at)
     SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[])
     ON CONFLICT (env, certname) DO UPDATE
     SET record = EXCLUDED.record, free_at = EXCLUDED.free_at";
const PUT_SERIALS_SQL: &str = "INSERT INTO certd_serials (env, serial, certname)
     SELECT $1, * FROM unnest($2::bytea[], $3::text[])";
const PUT_CERTS_SQL: &str = "INSERT INTO certd_certificates
       (env, certname, serial, record, der, summary)
     SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::text[], $5::bytea[], $6::bytea[])
     ON CONFLICT (env, certname) DO UPDATE
     SET serial = EXCLUDED.serial, record = EXCLUDED.record, der = EXCLUDED.der,
         summary = EXCLUDED.summary";

/// What a batch's commit did.
pub(super) struct Committed {
    /// Each submission's outcome, in order.
    pub(super) outcomes: Vec<Result<SubmitIssueOutcome, StoreError>>,
    /// The audit ids of its events (first, last).
    pub(super) ids: Option<(u64, u64)>,
    /// Which submissions issued in place of a stored (revoked) certificate, which other
    /// nodes may still hold.
    pub(super) replaced: Vec<bool>,
    /// For each submission, the audit id other nodes' caches must have followed before
    /// its outcome is answered (0: none): the batch's last when its name's certificate
    /// was replaced, and at least the fence of its name as read (`ops::write_fenced`).
    pub(super) fences: Vec<u64>,
}

/// The committer's connection and its prepared statements.
pub(super) struct Pipe {
    client: Client,
    /// An attempt ran out of time: the connection is in an unknown state.
    timed_out: bool,
    lock: Statement,
    lookup: Statement,
    delete_request: Statement,
    put_requests: Statement,
    put_serials: Statement,
    put_certs: Statement,
    audit: Statement,
    notify: Statement,
    put_fences: Statement,
}

/// A statement under way on the pipelined connection.
type Pending<'a, T, E = tokio_postgres::Error> =
    Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

impl Pipe {
    /// Opens the connection (its driver a task of `rt`) and prepares the statements.
    pub(super) fn connect(
        rt: &Runtime,
        config: &tokio_postgres::Config,
        tls: MakeTlsConnector,
    ) -> Result<Pipe, tokio_postgres::Error> {
        rt.block_on(async {
            let (client, connection) = config.connect(tls).await?;
            rt.spawn(async move {
                let _ = connection.await;
            });
            // Generic plans suit these statements (module doc); left to choose, the
            // server planned the audit append anew at every batch, under the writers'
            // lock (53 us a batch, more than it took to run). A server before
            // PostgreSQL 12 has no such setting and chooses for itself; a connection
            // that failed fails at the next statement.
            if let Err(e) = client
                .batch_execute("SET plan_cache_mode = force_generic_plan")
                .await
            {
                tracing::debug!(error = %e, "the server chooses the committer's plans");
            }
            let sqls = [
                LOCK_SQL,
                LOOKUP_SQL,
                DELETE_REQUEST_SQL,
                PUT_REQUESTS_SQL,
                PUT_SERIALS_SQL,
                PUT_CERTS_SQL,
                APPEND_EVENTS_SQL,
                NOTIFY_SQL,
                PUT_FENCES_SQL,
            ];
            // Every statement prepared: one given as text is prepared when first polled
            // and sent only once that answer is back, after the COMMIT of its batch.
            let p = |i: usize| client.prepare(sqls[i]);
            let (
                (lock, lookup, notify),
                (delete_request, put_requests, put_fences),
                (put_serials, put_certs, audit),
            ) = try_join3(
                try_join3(p(0), p(1), p(7)),
                try_join3(p(2), p(3), p(8)),
                try_join3(p(4), p(5), p(6)),
            )
            .await?;
            Ok(Pipe {
                client,
                timed_out: false,
                lock,
                lookup,
                delete_request,
                put_requests,
                put_serials,
                put_certs,
                audit,
                notify,
                put_fences,
            })
        })
    }

    /// Whether the connection is gone, or was given up on mid-batch.
    pub(super) fn is_closed(&self) -> bool {
        self.timed_out || self.client.is_closed()
    }

    /// Stores each submission as `CertificateStore::submit_issued` would, in order; a
    /// submission for a name whose stored row does not decode fails alone.
    ///
    /// An attempt that takes longer than `limit` (the database stopped answering) is
    /// abandoned: the connection is closed, so the server rolls the transaction back,
    /// and the batch is told the store is unavailable. (Were the `COMMIT` itself the
    /// statement cut off, the batch may have been stored: the 503 then means "maybe",
    /// and a resubmission finds the certificate.)
    pub(super) fn submit_issued(
        &mut self,
        rt: &Runtime,
        subs: &[Submission],
        limit: std::time::Duration,
    ) -> Result<Committed, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome =
                rt.block_on(async { tokio::time::timeout(limit, self.attempt(subs)).await });
            match outcome {
                Err(_) => {
                    self.timed_out = true;
                    return Err(StoreError::Unavailable(
                        "the database did not answer in time".into(),
                    ));
                }
                Ok(Err(OpError::Pg(e))) if attempt < RETRIES && is_retryable(&e) => continue,
                Ok(r) => return r.map_err(StoreError::from),
            }
        }
    }

    async fn attempt(&self, subs: &[Submission]) -> Result<Committed, OpError> {
        let mut envs: Vec<(EnvName, Rows)> = Vec::new();
        for s in subs {
            if !envs.iter().any(|(e, _)| *e == s.env) {
                envs.push((s.env.clone(), Rows::default()));
            }
        }
        // First flush: BEGIN, the lock, a lookup of each name and serial.
        let env_strs: Vec<String> = subs.iter().map(|s| s.env.to_string()).collect();
        let names: Vec<String> = subs.iter().map(|s| s.name.to_string()).collect();
        let mut lookups: Vec<Pending<'_, Row>> = Vec::with_capacity(subs.len());
        for (i, s) in subs.iter().enumerate() {
            let (env, name) = (env_strs[i].as_str(), &names[i]);
            lookups.push(Box::pin(async move {
                self.client
                    .query_one(&self.lookup, &[&env, name, &s.cert.serial])
                    .await
            }));
        }
        let lookups = join_all(lookups);
        let (begun, locked, found) = join3(
            self.client.batch_execute("BEGIN"),
            self.client.query(&self.lock, &[]),
            lookups,
        )
        .await;
        let first = begun.and(locked).and_then(|head| {
            let rows = found.into_iter().collect::<Result<Vec<Row>, _>>()?;
            Ok((head, rows))
        });
        let (head, found) = match first {
            Ok(first) => first,
            Err(e) => return Err(self.abandon(e).await),
        };
        // The batch's ids follow the head it locked; each outcome rests on the fence of
        // the name it read.
        let head = head
            .first()
            .map(|r| r.get::<_, i64>(0).max(0) as u64)
            .unwrap_or(0);
        let read_fences: Vec<u64> = found
            .iter()
            .map(|r| r.get::<_, Option<i64>>(3).unwrap_or(0).max(0) as u64)
            .collect();
        for (row, s) in found.into_iter().zip(subs) {
            if let Some((_, rows)) = envs.iter_mut().find(|(e, _)| *e == s.env) {
                absorb(rows, s, &row);
            }
        }
        let mut events = Vec::new();
        let mut out = Vec::with_capacity(subs.len());
        for s in subs {
            let Some((_, rows)) = envs.iter_mut().find(|(e, _)| *e == s.env) else {
                continue;
            };
            out.push(match rows.corrupt.get(s.name.as_str()) {
                Some(detail) => Err(StoreError::Corrupt {
                    tree: "requests or certificates".into(),
                    detail: detail.clone(),
                }),
                None => Ok(decide(s, rows, &mut events)),
            });
        }
        // Second flush: the writes, the audit events, COMMIT.
        let params: Vec<WriteParams> = envs
            .iter()
            .map(|(env, rows)| WriteParams::of(env, rows))
            .collect();
        let replaced: Vec<bool> = subs
            .iter()
            .map(|s| {
                envs.iter()
                    .any(|(e, rows)| *e == s.env && rows.replaced.contains(s.name.as_str()))
            })
            .collect();
        let fenced = replaced.contains(&true);
        let last = head + events.len() as u64;
        let audit = AuditParams::of(&events, fenced);
        let fences: Vec<(String, Vec<String>)> = envs
            .iter()
            .filter(|(_, rows)| !rows.replaced.is_empty())
            .map(|(env, rows)| (env.to_string(), rows.replaced.iter().cloned().collect()))
            .collect();
        let last_i64 = last as i64;
        let audit_refs = audit.refs();
        let mut writes: Vec<Pending<'_, u64>> = Vec::new();
        for p in &params {
            for name in &p.gone {
                writes.push(Box::pin(async move {
                    self.client
                        .execute(&self.delete_request, &[&p.env, name])
                        .await
                }));
            }
            if !p.kept_names.is_empty() {
                writes.push(Box::pin(async move {
                    self.client
                        .execute(
                            &self.put_requests,
                            &[&p.env, &p.kept_names, &p.kept_recs, &p.kept_free],
                        )
                        .await
                }));
            }
            if !p.serials.is_empty() {
                writes.push(Box::pin(async move {
                    self.client
                        .execute(&self.put_serials, &[&p.env, &p.serials, &p.serial_names])
                        .await
                }));
            }
            if !p.cert_names.is_empty() {
                writes.push(Box::pin(async move {
                    self.client
                        .execute(
                            &self.put_certs,
                            &[
                                &p.env,
                                &p.cert_names,
                                &p.cert_serials,
                                &p.cert_recs,
                                &p.ders,
                                &p.summaries,
                            ],
                        )
                        .await
                }));
            }
        }
        if fenced {
            // Other nodes' readers follow at once (`readers.rs`).
            writes.push(Box::pin(async {
                self.client.execute(&self.notify, &[]).await
            }));
        }
        for (env, names) in &fences {
            let envs = vec![env.as_str(); names.len()];
            let last = &last_i64;
            writes.push(Box::pin(async move {
                self.client
                    .execute(&self.put_fences, &[&envs, names, last])
                    .await
            }));
        }
        if !events.is_empty() {
            writes.push(Box::pin(async {
                let row = self.client.query_one(&self.audit, &audit_refs).await?;
                Ok(row.get::<_, i64>(0).max(0) as u64)
            }));
        }
        let (written, ended) = commit_after(writes, |commit| {
            self.client
                .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
        })
        .await;
        let mut appended = 0;
        for w in written {
            appended = w?;
        }
        ended?;
        if !events.is_empty() && appended != last {
            // Cannot be while writers take turns on the head; committed all the same,
            // so waited for as far as it went.
            tracing::error!(
                expected = last,
                appended,
                "the audit log's head moved under the writers' lock"
            );
        }
        let last = last.max(appended);
        let n = events.len() as u64;
        // A name replaced in the batch rests on the batch's last id, for every
        // submission that names it.
        let fences = read_fences
            .iter()
            .zip(&replaced)
            .map(|(read, r)| if *r { last } else { 0 }.max(*read))
            .collect();
        Ok(Committed {
            outcomes: out,
            ids: (n > 0 && last >= n).then(|| (last - n + 1, last)),
            fences,
            replaced,
        })
    }

    /// Rolls back after a failed statement; the error to report.
    async fn abandon(&self, e: tokio_postgres::Error) -> OpError {
        if !self.client.is_closed() {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        OpError::Pg(e)
    }
}

/// Runs `writes` and then ends the transaction with `end`, pipelined: each write is
/// polled once, in order, before `end` is even called (the client sends a prepared
/// statement on its first poll, so every write is on the wire ahead of the `COMMIT`; one
/// given as text would first be prepared, and sent after it; a write sent
/// after it would run outside the transaction). A failed write the server saw aborted
/// the transaction, so a `COMMIT` after it rolls back; a write the client refused before
/// sending it (it failed on its first poll: an encoding error) left nothing on the server
/// to abort, so `end` is told to roll back (`false`) instead of committing what went.
/// Either way no batch commits without all its writes. (`join_all` polls more than 30
/// futures through `FuturesUnordered`, which may stop a round early: not relied on.)
async fn commit_after<'a, T, E, C>(
    mut writes: Vec<Pending<'a, T, E>>,
    end: impl FnOnce(bool) -> C,
) -> (Vec<Result<T, E>>, Result<(), E>)
where
    C: Future<Output = Result<(), E>>,
{
    let mut done: Vec<Option<Result<T, E>>> = writes.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (w, d) in writes.iter_mut().zip(done.iter_mut()) {
            if let std::task::Poll::Ready(r) = w.as_mut().poll(cx) {
                *d = Some(r);
            }
        }
        std::task::Poll::Ready(())
    })
    .await;
    let refused = done.iter().any(|d| matches!(d, Some(Err(_))));
    let rest = join_all(writes.into_iter().zip(done).map(|(w, d)| async move {
        match d {
            Some(r) => r,
            None => w.await,
        }
    }));
    join(rest, end(!refused)).await
}

/// A submission's lookup (its name's request and certificate, whether its serial is
/// taken), into `rows`. The certificate read only decides (is there one, is it
/// revoked): its fingerprints are not put back (`ops::with_fingerprints`), so it is
/// never to be written, cached or returned.
fn absorb(rows: &mut Rows, s: &Submission, row: &Row) {
    let name = s.name.to_string();
    if let Some(text) = row.get::<_, Option<&str>>(0) {
        match decode_text("requests", text) {
            Ok(rec) => drop(rows.requests.insert(name.clone(), rec)),
            Err(e) => drop(rows.corrupt.insert(name.clone(), e.to_string())),
        }
    }
    if let Some(text) = row.get::<_, Option<&str>>(1) {
        match decode_text("certificates", text) {
            Ok(rec) => drop(rows.certificates.insert(name, rec)),
            Err(e) => drop(rows.corrupt.insert(name, e.to_string())),
        }
    }
    if row.get::<_, bool>(2) {
        rows.serials.insert(s.cert.serial.clone());
    }
}

/// What the batch touches in one environment, as read, then as changed.
#[derive(Default)]
struct Rows {
    requests: BTreeMap<String, RequestRecord>,
    certificates: BTreeMap<String, CertRecord>,
    serials: BTreeSet<Vec<u8>>,
    /// Requests to write (`None`: delete), certificates to write, serials to index.
    put_requests: BTreeMap<String, Option<RequestRecord>>,
    put_certificates: BTreeMap<String, CertRecord>,
    new_serials: Vec<(Vec<u8>, String)>,
    /// Names whose stored row does not decode: their submissions fail alone.
    corrupt: BTreeMap<String, String>,
    /// Names whose certificate (a revoked one) is replaced: other nodes may hold it.
    replaced: BTreeSet<String>,
}

/// One submission's outcome on the rows as the ones before it left them.
fn decide(s: &Submission, rows: &mut Rows, events: &mut Vec<Event>) -> SubmitIssueOutcome {
    let name = s.name.as_str();
    if rows.serials.contains(&s.cert.serial) {
        return SubmitIssueOutcome::SerialTaken;
    }
    if s.rule.new_only && (rows.certificates.contains_key(name) || rows.requests.contains_key(name))
    {
        return SubmitIssueOutcome::Refused(SubmitOutcome::NotNew);
    }
    if let Some(c) = rows.certificates.get(name) {
        if !s.rule.allow_if_signed {
            return SubmitIssueOutcome::Refused(SubmitOutcome::CertificateExists {
                revoked: c.revocation.is_some(),
            });
        }
    }
    let pending = rows
        .requests
        .get(name)
        .is_some_and(|p| p.state == RequestState::Requested);
    if pending && !s.rule.replace_pending {
        return SubmitIssueOutcome::Refused(SubmitOutcome::RequestPending);
    }
    let (kind, detail) = s.rec.submit_event(pending);
    events.push(Event::new(s.rec.submitted_at, &s.env, name, kind, detail));
    let stored = if pending {
        SubmitOutcome::Replaced
    } else {
        SubmitOutcome::Created
    };
    // The request just stored is the one issued, unless it is not a pending one or the
    // name holds a valid certificate.
    let issued = if s.rec.state != RequestState::Requested {
        IssueOutcome::NoRequest
    } else if rows
        .certificates
        .get(name)
        .is_some_and(|c| c.revocation.is_none())
    {
        IssueOutcome::AlreadySigned
    } else {
        IssueOutcome::Issued
    };
    if issued == IssueOutcome::Issued {
        // Deleted only where a row may be (read, or written earlier in the batch).
        if rows.requests.remove(name).is_some() {
            rows.put_requests.insert(name.to_owned(), None);
        }
        if rows
            .certificates
            .insert(name.to_owned(), s.cert.clone())
            .is_some()
        {
            rows.replaced.insert(name.to_owned());
        }
        rows.put_certificates
            .insert(name.to_owned(), s.cert.clone());
        rows.serials.insert(s.cert.serial.clone());
        rows.new_serials
            .push((s.cert.serial.clone(), name.to_owned()));
        events.push(Event::new(
            s.cert.issued_at,
            &s.env,
            name,
            EventKind::Issued,
            None,
        ));
    } else {
        rows.requests.insert(name.to_owned(), s.rec.clone());
        rows.put_requests
            .insert(name.to_owned(), Some(s.rec.clone()));
    }
    SubmitIssueOutcome::Stored(stored, issued)
}

/// The parameters of one environment's write.
struct WriteParams {
    env: String,
    gone: Vec<String>,
    kept_names: Vec<String>,
    kept_recs: Vec<String>,
    kept_free: Vec<Option<i64>>,
    serials: Vec<Vec<u8>>,
    serial_names: Vec<String>,
    cert_names: Vec<String>,
    cert_serials: Vec<Vec<u8>>,
    cert_recs: Vec<String>,
    ders: Vec<Vec<u8>>,
    summaries: Vec<Option<Vec<u8>>>,
}

impl WriteParams {
    fn of(env: &EnvName, rows: &Rows) -> WriteParams {
        let kept: Vec<(&String, &RequestRecord)> = rows
            .put_requests
            .iter()
            .filter_map(|(n, r)| r.as_ref().map(|r| (n, r)))
            .collect();
        let certs = &rows.put_certificates;
        let (cert_recs, summaries) = certs.values().map(cert_columns).unzip();
        WriteParams {
            env: env.to_string(),
            gone: rows
                .put_requests
                .iter()
                .filter(|(_, r)| r.is_none())
                .map(|(n, _)| n.clone())
                .collect(),
            kept_names: kept.iter().map(|(n, _)| (*n).clone()).collect(),
            kept_recs: kept.iter().map(|(_, r)| json(*r)).collect(),
            kept_free: kept.iter().map(|(_, r)| r.order_free_at()).collect(),
            serials: rows.new_serials.iter().map(|(s, _)| s.clone()).collect(),
            serial_names: rows.new_serials.iter().map(|(_, n)| n.clone()).collect(),
            cert_names: certs.keys().cloned().collect(),
            cert_serials: certs.values().map(|c| c.serial.clone()).collect(),
            cert_recs,
            ders: certs.values().map(|c| c.der.clone()).collect(),
            summaries,
        }
    }
}

/// The parameters of the audit append.
struct AuditParams {
    n: i64,
    ats: Vec<i64>,
    envs: Vec<String>,
    names: Vec<String>,
    kinds: Vec<String>,
    details: Vec<Option<String>>,
    /// The last event's id becomes the fenced id.
    fenced: bool,
}

impl AuditParams {
    fn of(events: &[Event], fenced: bool) -> AuditParams {
        AuditParams {
            fenced,
            n: events.len() as i64,
            ats: events.iter().map(|e| e.at).collect(),
            envs: events.iter().map(|e| e.env.clone()).collect(),
            names: events.iter().map(|e| e.certname.clone()).collect(),
            kinds: events.iter().map(|e| e.kind_str()).collect(),
            details: events.iter().map(|e| e.detail.clone()).collect(),
        }
    }

    fn refs(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.n,
            &self.ats,
            &self.envs,
            &self.names,
            &self.kinds,
            &self.details,
            &self.fenced,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::task::Poll;

    type Write = Pin<Box<dyn Future<Output = Result<u64, String>> + Send>>;

    /// Runs `commit_after` on `writes`; what `end` was told (true: commit).
    fn ending(writes: Vec<Write>) -> (Vec<Result<u64, String>>, bool) {
        let told = Mutex::new(None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (written, ended) = rt.block_on(commit_after(writes, |commit| {
            *told.lock().unwrap() = Some(commit);
            futures_util::future::ready(Ok(()))
        }));
        assert!(ended.is_ok());
        let told = told.lock().unwrap().expect("end was called");
        (written, told)
    }

    /// A write that answers only after the end was sent, as the server's answers come.
    fn answered_later(r: Result<u64, String>) -> Write {
        let mut polled = false;
        let mut r = Some(r);
        Box::pin(futures_util::future::poll_fn(move |cx| {
            if polled {
                Poll::Ready(r.take().unwrap())
            } else {
                polled = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }))
    }

    #[test]
    fn a_write_refused_before_it_was_sent_rolls_the_batch_back() {
        let refused: Write = Box::pin(futures_util::future::ready(Err("encoding".into())));
        let (written, commit) = ending(vec![answered_later(Ok(1)), refused]);
        assert!(
            !commit,
            "a COMMIT followed a write that never reached the server"
        );
        assert!(written[1].is_err());
    }

    /// A write that sends itself on its first poll, and tells whether the end had been
    /// called by then (it would have been sent after the COMMIT).
    fn sends_first(
        ended: &std::sync::Arc<Mutex<bool>>,
        late: &std::sync::Arc<Mutex<usize>>,
    ) -> Write {
        let (ended, late) = (ended.clone(), late.clone());
        let mut sent = false;
        Box::pin(futures_util::future::poll_fn(move |cx| {
            if !sent {
                sent = true;
                if *ended.lock().unwrap() {
                    *late.lock().unwrap() += 1;
                }
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(Ok(1))
            }
        }))
    }

    #[test]
    fn every_write_is_sent_before_the_end_however_many() {
        for n in [1, 30, 31, 40, 300] {
            let ended = std::sync::Arc::new(Mutex::new(false));
            let late = std::sync::Arc::new(Mutex::new(0));
            let writes: Vec<Write> = (0..n).map(|_| sends_first(&ended, &late)).collect();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let (written, ended_ok) = rt.block_on(commit_after(writes, |commit| {
                *ended.lock().unwrap() = true;
                futures_util::future::ready(if commit {
                    Ok(())
                } else {
                    Err("rolled back".to_owned())
                })
            }));
            assert!(ended_ok.is_ok());
            assert_eq!(written.len(), n);
            assert_eq!(
                *late.lock().unwrap(),
                0,
                "{n} writes: some were sent after the end"
            );
        }
    }

    #[test]
    fn writes_the_server_answers_are_followed_by_commit() {
        let (written, commit) = ending(vec![answered_later(Ok(1)), answered_later(Ok(2))]);
        assert!(commit);
        assert_eq!(written, vec![Ok(1), Ok(2)]);
        // A write the server refuses aborted the transaction there: its COMMIT rolls back.
        let (written, commit) = ending(vec![answered_later(Err("unique".into()))]);
        assert!(commit);
        assert!(written[0].is_err());
    }
}
