//! One environment transaction and the record-level operations inside it.

use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionalTree,
};

use super::super::schema::{self, decode, due_key, encode, serial_key, u64_key};
use super::*;

/// The trees one environment transaction sees.
pub(super) struct Tx<'a> {
    pub(super) requests: &'a TransactionalTree,
    pub(super) orders_due: &'a TransactionalTree,
    pub(super) certificates: &'a TransactionalTree,
    pub(super) certificate_der: &'a TransactionalTree,
    pub(super) serials: &'a TransactionalTree,
    pub(super) revocations: &'a TransactionalTree,
    pub(super) audit: &'a TransactionalTree,
    pub(super) meta: &'a TransactionalTree,
}

pub(super) type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

pub(super) fn engine(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(e) => StoreError::Unavailable(e.to_string()),
        e => StoreError::Engine(e.to_string()),
    }
}

/// A write that was applied but could not be flushed: unavailable when the flush met
/// an I/O error.
pub(super) fn not_durable(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(why) => StoreError::Unavailable(format!("not made durable: {why}")),
        e => StoreError::Engine(format!("not made durable: {e}")),
    }
}

pub(super) fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

impl<'a> Tx<'a> {
    pub(super) fn get<T: serde::de::DeserializeOwned>(
        &self,
        tree: &TransactionalTree,
        name: &str,
        key: &[u8],
    ) -> TxResult<Option<T>> {
        match tree.get(key)? {
            Some(v) => Ok(Some(decode(name, &v).map_err(abort)?)),
            None => Ok(None),
        }
    }

    /// Stores a request, keeping the due-time index of orders. A record there that does
    /// not decode is replaced (it has no index entry: the index leaves such records out).
    pub(super) fn put_request(&self, name: &str, rec: &RequestRecord) -> TxResult<()> {
        let prev = self
            .requests
            .insert(name, encode(rec))?
            .and_then(|v| decode::<RequestRecord>("requests", &v).ok());
        self.reindex(name, prev.as_ref(), rec.order_free_at())
    }

    /// Removes a request and its index entry; whether there was one. A record that
    /// does not decode is removed too.
    pub(super) fn remove_request(&self, name: &str) -> TxResult<bool> {
        let Some(raw) = self.requests.remove(name)? else {
            return Ok(false);
        };
        let prev = decode::<RequestRecord>("requests", &raw).ok();
        self.reindex(name, prev.as_ref(), None)?;
        Ok(true)
    }

    /// Moves `name`'s index entry from `prev`'s due time to `now`.
    pub(super) fn reindex(
        &self,
        name: &str,
        prev: Option<&RequestRecord>,
        now: Option<i64>,
    ) -> TxResult<()> {
        let was = prev.and_then(|p| p.order_free_at());
        if was == now {
            return Ok(());
        }
        if let Some(at) = was {
            self.orders_due.remove(due_key(at, name))?;
        }
        if let Some(at) = now {
            self.orders_due.insert(due_key(at, name), &[])?;
        }
        Ok(())
    }

    pub(super) fn log(
        &self,
        at: UnixTime,
        env: &EnvName,
        certname: &str,
        kind: EventKind,
    ) -> TxResult<()> {
        log(self.audit, self.meta, at, env, certname, kind, None)
    }

    /// [`RequestStore::submit_request`] inside a transaction.
    pub(super) fn submit(
        &self,
        env: &EnvName,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
    ) -> TxResult<SubmitOutcome> {
        if rule.new_only {
            let key = name.as_str().as_bytes();
            if self.certificates.get(key)?.is_some() || self.requests.get(key)?.is_some() {
                return Ok(SubmitOutcome::NotNew);
            }
        }
        if !rule.allow_if_signed {
            if let Some(cert) =
                self.get::<CertRecord>(self.certificates, "certificates", name.as_str().as_bytes())?
            {
                return Ok(SubmitOutcome::CertificateExists {
                    revoked: cert.revocation.is_some(),
                });
            }
        }
        let prev =
            self.get::<RequestRecord>(self.requests, "requests", name.as_str().as_bytes())?;
        let replaced = matches!(
            prev,
            Some(RequestRecord {
                state: RequestState::Requested,
                ..
            })
        );
        if replaced && !rule.replace_pending {
            return Ok(SubmitOutcome::RequestPending);
        }
        self.put_request(name.as_str(), rec)?;
        let (kind, detail) = rec.submit_event(replaced);
        log(
            self.audit,
            self.meta,
            rec.submitted_at,
            env,
            name.as_str(),
            kind,
            detail,
        )?;
        Ok(if replaced {
            SubmitOutcome::Replaced
        } else {
            SubmitOutcome::Created
        })
    }

    /// [`CertificateStore::submit_issued`] inside a transaction: the serial first, so that
    /// `SerialTaken` writes nothing.
    pub(super) fn submit_issued(&self, op: &IssueOp) -> TxResult<SubmitIssueOutcome> {
        let IssueOp {
            env,
            name,
            rec,
            rule,
            cert,
        } = op;
        if self.serials.get(serial_key(&cert.serial))?.is_some() {
            return Ok(SubmitIssueOutcome::SerialTaken);
        }
        match self.submit(env, name, rec, *rule)? {
            o @ (SubmitOutcome::Created | SubmitOutcome::Replaced) => Ok(
                SubmitIssueOutcome::Stored(o, self.issue(env, name, rec, cert)?),
            ),
            refused => Ok(SubmitIssueOutcome::Refused(refused)),
        }
    }

    /// [`CertificateStore::issue`] inside a transaction.
    pub(super) fn issue(
        &self,
        env: &EnvName,
        name: &Certname,
        expected: &RequestRecord,
        cert: &CertRecord,
    ) -> TxResult<IssueOutcome> {
        let key = name.as_str().as_bytes();
        let req = match self.get::<RequestRecord>(self.requests, "requests", key)? {
            Some(r) if r.state == RequestState::Requested => r,
            _ => return Ok(IssueOutcome::NoRequest),
        };
        if req != *expected {
            return Ok(IssueOutcome::RequestChanged);
        }
        if let Some(existing) = self.get::<CertRecord>(self.certificates, "certificates", key)? {
            if existing.revocation.is_none() {
                return Ok(IssueOutcome::AlreadySigned);
            }
        }
        let skey = serial_key(&cert.serial);
        if self.serials.get(&skey)?.is_some() {
            return Ok(IssueOutcome::SerialTaken);
        }
        self.remove_request(name.as_str())?;
        self.put_cert(key, cert)?;
        self.serials.insert(skey, key)?;
        self.log(cert.issued_at, env, name.as_str(), EventKind::Issued)?;
        Ok(IssueOutcome::Issued)
    }

    /// Cleans `name`: revokes its certificate if valid, forgets it and any request;
    /// with `certified`, only if it has a certificate.
    pub(super) fn clean(
        &self,
        env: &EnvName,
        name: &Certname,
        revocation: Revocation,
        certified: bool,
    ) -> TxResult<CleanOutcome> {
        let key = name.as_str().as_bytes();
        let cert = self.get::<CertRecord>(self.certificates, "certificates", key)?;
        if certified && cert.is_none() {
            return Ok(CleanOutcome::NotFound);
        }
        let had_request = self.remove_request(name.as_str())?;
        if cert.is_none() && !had_request {
            return Ok(CleanOutcome::NotFound);
        }
        let mut revoked = None;
        if let Some(cert) = cert {
            if cert.revocation.is_none() {
                self.list_revoked(env, name, &cert.serial, revocation)?;
                revoked = Some(cert.serial);
            }
            self.certificates.remove(key)?;
            self.certificate_der.remove(key)?;
        }
        self.log(
            revocation.revoked_at,
            env,
            name.as_str(),
            EventKind::Cleaned,
        )?;
        Ok(CleanOutcome::Cleaned { revoked })
    }

    /// Stores a certificate record: the DER in its own tree when the record carries it (a
    /// new certificate, or a schema 1 record that had it inline), the rest as JSON.
    pub(super) fn put_cert(&self, key: &[u8], cert: &CertRecord) -> TxResult<()> {
        if !cert.der.is_empty() {
            self.certificate_der.insert(key, cert.der.as_slice())?;
        }
        self.certificates.insert(key, encode(cert))?;
        Ok(())
    }

    /// Marks the certificate revoked and lists its serial; the caller checked it is valid.
    pub(super) fn revoke(
        &self,
        env: &EnvName,
        name: &Certname,
        mut cert: CertRecord,
        revocation: Revocation,
    ) -> TxResult<()> {
        cert.revocation = Some(revocation);
        self.put_cert(name.as_str().as_bytes(), &cert)?;
        self.list_revoked(env, name, &cert.serial, revocation)
    }

    /// Lists `serial` as revoked and logs it: the part of a revocation that outlives the
    /// certificate's record (a clean deletes the record right after).
    pub(super) fn list_revoked(
        &self,
        env: &EnvName,
        name: &Certname,
        serial: &[u8],
        revocation: Revocation,
    ) -> TxResult<()> {
        let entry = RevokedSerial {
            serial: serial.to_vec(),
            revocation,
        };
        self.revocations
            .insert(serial_key(serial), encode(&entry))?;
        self.log(
            revocation.revoked_at,
            env,
            name.as_str(),
            EventKind::Revoked,
        )
    }
}

/// Appends one event to the audit log; the id is the counter in `meta` plus one, so ids
/// are consecutive as long as every append happens inside a transaction.
pub(super) fn log(
    audit: &TransactionalTree,
    meta: &TransactionalTree,
    at: UnixTime,
    env: &EnvName,
    certname: &str,
    kind: EventKind,
    detail: Option<String>,
) -> TxResult<()> {
    let last = match meta.get(schema::KEY_AUDIT_LAST)? {
        Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
            abort(StoreError::Corrupt {
                tree: "meta".into(),
                detail: "audit counter".into(),
            })
        })?),
        None => 0,
    };
    let id = last + 1;
    meta.insert(schema::KEY_AUDIT_LAST, &u64_key(id))?;
    let ev = AuditEvent {
        id,
        at,
        env: env.to_string(),
        certname: certname.to_owned(),
        kind,
        detail,
    };
    audit.insert(&u64_key(id), encode(&ev))?;
    Ok(())
}
