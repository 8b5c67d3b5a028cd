//! Autosigned submissions, a batch in one transaction with a fixed number of round
//! trips (five: `BEGIN` with the writers' lock, one read, one write per environment, the
//! audit events, `COMMIT`): what the batch touches is read in one statement (joins with
//! the unnested names and serials: an index probe each), the outcomes are decided in
//! order on those rows (exactly as one submission after another would decide), and the
//! changes are written in one statement. One statement per submission and step cost ~10
//! round trips each, and bound issuance by them (827/s against sled's 3,964/s).

use std::collections::{BTreeMap, BTreeSet};

use postgres::GenericClient;

use super::committer::Submission;
use super::ops::{json, Op, Tx};
use crate::ca::EnvName;
use crate::store::schema::decode;
use crate::store::{
    CertRecord, EventKind, IssueOutcome, RequestRecord, RequestState, StoreError,
    SubmitIssueOutcome, SubmitOutcome,
};

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
}

/// Stores each submission as `CertificateStore::submit_issued` would, in order; a
/// submission for a name whose stored row does not decode fails alone.
pub(super) fn submit_issued<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    subs: &[Submission],
) -> Op<Vec<Result<SubmitIssueOutcome, StoreError>>> {
    let mut by_env: BTreeMap<String, (EnvName, Rows)> = BTreeMap::new();
    for s in subs {
        by_env
            .entry(s.env.to_string())
            .or_insert_with(|| (s.env.clone(), Rows::default()));
    }
    for (env, rows) in by_env.values_mut() {
        let mine: Vec<&Submission> = subs.iter().filter(|s| s.env == *env).collect();
        read(tx, env, &mine, rows)?;
    }
    let mut out = Vec::with_capacity(subs.len());
    for s in subs {
        let Some((_, rows)) = by_env.get_mut(s.env.as_str()) else {
            continue;
        };
        out.push(match rows.corrupt.get(s.name.as_str()) {
            Some(detail) => Err(StoreError::Corrupt {
                tree: "requests or certificates".into(),
                detail: detail.clone(),
            }),
            None => Ok(decide(tx, s, rows)),
        });
    }
    for (env, rows) in by_env.values() {
        write(tx, env, rows)?;
    }
    Ok(out)
}

/// The requests and certificates of the batch's names and which of its serials are
/// taken, in one statement.
fn read<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    env: &EnvName,
    subs: &[&Submission],
    rows: &mut Rows,
) -> Op<()> {
    let names: Vec<&str> = subs.iter().map(|s| s.name.as_str()).collect();
    let serials: Vec<&[u8]> = subs.iter().map(|s| s.cert.serial.as_slice()).collect();
    let found = tx.query(
        "SELECT 'r', r.certname, r.record, NULL::bytea FROM unnest($2::text[]) AS n(name)
           JOIN certd_requests r ON r.env = $1 AND r.certname = n.name COLLATE \"C\"
         UNION ALL
         SELECT 'c', c.certname, c.record, NULL FROM unnest($2::text[]) AS n(name)
           JOIN certd_certificates c ON c.env = $1 AND c.certname = n.name COLLATE \"C\"
         UNION ALL
         SELECT 's', NULL, NULL, s.serial FROM unnest($3::bytea[]) AS n(serial)
           JOIN certd_serials s ON s.env = $1 AND s.serial = n.serial",
        &[&env.as_str(), &names, &serials],
    )?;
    for r in found {
        match r.get::<_, &str>(0) {
            "s" => drop(rows.serials.insert(r.get(3))),
            "r" => match decode("requests", r.get::<_, &str>(2).as_bytes()) {
                Ok(rec) => drop(rows.requests.insert(r.get(1), rec)),
                Err(e) => drop(rows.corrupt.insert(r.get(1), e.to_string())),
            },
            _ => match decode("certificates", r.get::<_, &str>(2).as_bytes()) {
                Ok(rec) => drop(rows.certificates.insert(r.get(1), rec)),
                Err(e) => drop(rows.corrupt.insert(r.get(1), e.to_string())),
            },
        }
    }
    Ok(())
}

/// One submission's outcome on the rows as the ones before it left them.
fn decide<C: GenericClient>(
    tx: &mut Tx<'_, C>,
    s: &Submission,
    rows: &mut Rows,
) -> SubmitIssueOutcome {
    let name = s.name.as_str();
    if rows.serials.contains(&s.cert.serial) {
        return SubmitIssueOutcome::SerialTaken;
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
    tx.log_detail(s.rec.submitted_at, &s.env, name, kind, detail);
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
        rows.requests.remove(name);
        rows.put_requests.insert(name.to_owned(), None);
        rows.certificates.insert(name.to_owned(), s.cert.clone());
        rows.put_certificates
            .insert(name.to_owned(), s.cert.clone());
        rows.serials.insert(s.cert.serial.clone());
        rows.new_serials
            .push((s.cert.serial.clone(), name.to_owned()));
        tx.log_detail(s.cert.issued_at, &s.env, name, EventKind::Issued, None);
    } else {
        rows.requests.insert(name.to_owned(), s.rec.clone());
        rows.put_requests
            .insert(name.to_owned(), Some(s.rec.clone()));
    }
    SubmitIssueOutcome::Stored(stored, issued)
}

/// Every change of one environment, in one statement.
fn write<C: GenericClient>(tx: &mut Tx<'_, C>, env: &EnvName, rows: &Rows) -> Op<()> {
    let gone: Vec<&str> = rows
        .put_requests
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let kept: Vec<(&String, &RequestRecord)> = rows
        .put_requests
        .iter()
        .filter_map(|(n, r)| r.as_ref().map(|r| (n, r)))
        .collect();
    let kept_names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
    let kept_recs: Vec<String> = kept.iter().map(|(_, r)| json(*r)).collect();
    let kept_free: Vec<Option<i64>> = kept.iter().map(|(_, r)| r.order_free_at()).collect();
    let serials: Vec<&[u8]> = rows.new_serials.iter().map(|(s, _)| s.as_slice()).collect();
    let serial_names: Vec<&str> = rows.new_serials.iter().map(|(_, n)| n.as_str()).collect();
    let certs = &rows.put_certificates;
    let cert_names: Vec<&str> = certs.keys().map(String::as_str).collect();
    let cert_serials: Vec<&[u8]> = certs.values().map(|c| c.serial.as_slice()).collect();
    let cert_recs: Vec<String> = certs.values().map(json).collect();
    let ders: Vec<&[u8]> = certs.values().map(|c| c.der.as_slice()).collect();
    // The serials before the certificates that reference them: a CTE's rows are checked
    // against the foreign key when the statement ends.
    tx.exec(
        "WITH gone AS (
           DELETE FROM certd_requests r USING unnest($2::text[]) AS n(name)
           WHERE r.env = $1 AND r.certname = n.name COLLATE \"C\"),
         kept AS (
           INSERT INTO certd_requests (env, certname, record, free_at)
           SELECT $1, * FROM unnest($3::text[], $4::text[], $5::bigint[])
           ON CONFLICT (env, certname) DO UPDATE
           SET record = EXCLUDED.record, free_at = EXCLUDED.free_at),
         serials AS (
           INSERT INTO certd_serials (env, serial, certname)
           SELECT $1, * FROM unnest($6::bytea[], $7::text[]))
         INSERT INTO certd_certificates (env, certname, serial, record, der)
         SELECT $1, * FROM unnest($8::text[], $9::bytea[], $10::text[], $11::bytea[])
         ON CONFLICT (env, certname) DO UPDATE
         SET serial = EXCLUDED.serial, record = EXCLUDED.record, der = EXCLUDED.der",
        &[
            &env.as_str(),
            &gone,
            &kept_names,
            &kept_recs,
            &kept_free,
            &serials,
            &serial_names,
            &cert_names,
            &cert_serials,
            &cert_recs,
            &ders,
        ],
    )?;
    Ok(())
}
