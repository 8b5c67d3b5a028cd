//! Use cases of the Puppet face (Puppet Server 7's CA API, with the 8.x additions), on
//! the same core as the native face, in the default environment.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

use super::certificates::Acted;
use super::status::{alt_names, fingerprints, Fingerprints};
use super::{certname, App, AppError, EnvCa, Submitted, Submitting};
use crate::authz::Identity;
use crate::ca::{CertInfo, Certname, Digest, SerialNumber, UnixTime, ValidatedCsr};
use crate::store::{
    CertState, CertSummary, CleanOutcome, RequestRecord, RequestState, Revocation, RevokedSerial,
};

/// The environment the Puppet face serves.
pub const PUPPET_ENV: &str = "production";

/// Puppet's date format: `2025-08-20T22:06:21UTC`.
pub fn puppet_date(t: UnixTime) -> String {
    crate::ca::format_utc(t, "UTC")
}

/// Puppet Server 7's status object (reference section 3.5), served as JSON by
/// [`PuppetStatus::write_json`].
#[derive(Debug)]
pub enum PuppetStatus {
    /// A certificate's: written straight from its stored summary, so that a listing of
    /// 100,000 builds no string of its own.
    Certificate(Certname, CertSummary),
    /// A request's.
    Request(StatusFields),
}

/// A status's fields; their derived `Serialize` is the reference the hand-written JSON
/// is tested against.
#[derive(Debug, Serialize)]
pub struct StatusFields {
    name: String,
    state: CertState,
    fingerprint: String,
    fingerprints: Fingerprints,
    dns_alt_names: Vec<String>,
    subject_alt_names: Vec<String>,
    authorization_extensions: BTreeMap<String, String>,
    /// A JSON integer of any size (serials are 128-bit; Ruby reads bignums).
    #[serde(skip_serializing_if = "Option::is_none")]
    serial_number: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
}

impl PuppetStatus {
    /// Appends the status as JSON: exactly the bytes `serde_json` writes for its
    /// `StatusFields` (tests check), but a certificate's fingerprints (most of a
    /// listing's 92 MB for 100,000 certificates) are written from their bytes, and a
    /// string with nothing to escape is found so by a check the compiler vectorises and
    /// copied as it is, instead of escaped byte by byte.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            PuppetStatus::Certificate(name, c) => write_certificate(out, name, c),
            PuppetStatus::Request(f) => f.write_json(out),
        }
    }
}

/// A fingerprint to write: as text, or as a digest's bytes.
#[derive(Clone, Copy)]
enum Fp<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl Fp<'_> {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Fp::Text(s) => json_str(out, "", s),
            Fp::Bytes(b) => {
                // Hex pairs and colons: nothing to escape.
                out.push(b'"');
                crate::ca::write_hex_pairs(out, b);
                out.push(b'"');
            }
        }
    }
}

/// The start of every status: name, state, fingerprint, then the fingerprints (SHA-1,
/// SHA-256, SHA-512 and the default).
fn write_head(out: &mut Vec<u8>, name: &str, state: CertState, fp: Fp<'_>, fps: [Fp<'_>; 4]) {
    out.extend_from_slice(b"{\"name\":");
    json_str(out, "", name);
    out.extend_from_slice(b",\"state\":");
    json_str(out, "", state.as_str());
    out.extend_from_slice(b",\"fingerprint\":");
    fp.write(out);
    for (key, value) in [
        &b",\"fingerprints\":{\"SHA1\":"[..],
        b",\"SHA256\":",
        b",\"SHA512\":",
        b",\"default\":",
    ]
    .into_iter()
    .zip(fps)
    {
        out.extend_from_slice(key);
        value.write(out);
    }
    out.push(b'}');
}

/// `open`, each item as `item` writes it with commas between, then `close`.
fn json_seq<T>(
    out: &mut Vec<u8>,
    (open, close): (u8, u8),
    items: impl IntoIterator<Item = T>,
    mut item: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(open);
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, x);
    }
    out.push(close);
}

/// A JSON array of strings, each `prefix` then the item.
fn json_list<'a>(out: &mut Vec<u8>, items: impl IntoIterator<Item = (&'static str, &'a str)>) {
    json_seq(out, (b'[', b']'), items, |out, (prefix, s)| {
        json_str(out, prefix, s)
    });
}

/// A JSON object of strings.
fn json_map<'a>(out: &mut Vec<u8>, entries: impl IntoIterator<Item = (&'a str, &'a str)>) {
    json_seq(out, (b'{', b'}'), entries, |out, (k, v)| {
        json_str(out, "", k);
        out.push(b':');
        json_str(out, "", v);
    });
}

/// `dns_alt_names` (`DNS:name`) and `subject_alt_names` (`IP:addr` first, then the
/// DNS names).
fn write_alt_names(out: &mut Vec<u8>, dns: &[String], ips: &[String]) {
    let dns_items = || dns.iter().map(|d| ("DNS:", d.as_str()));
    out.extend_from_slice(b",\"dns_alt_names\":");
    json_list(out, dns_items());
    out.extend_from_slice(b",\"subject_alt_names\":");
    json_list(
        out,
        ips.iter().map(|i| ("IP:", i.as_str())).chain(dns_items()),
    );
}

/// What `cert_fields` (the tests' reference) gives, written from the summary as it is.
fn write_certificate(out: &mut Vec<u8>, name: &Certname, c: &CertSummary) {
    let f = &c.fingerprints;
    let state = CertState::of_certificate(c.revocation.is_some());
    // Puppet's default digest is SHA-256.
    let sha256 = Fp::Bytes(f.sha256.bytes());
    let fps = [
        Fp::Bytes(f.sha1.bytes()),
        sha256,
        Fp::Bytes(f.sha512.bytes()),
        sha256,
    ];
    write_head(out, name.as_str(), state, sha256, fps);
    write_alt_names(out, &c.dns_names, &c.ip_addrs);
    out.extend_from_slice(b",\"authorization_extensions\":");
    if c.authorization_extensions.is_empty() {
        out.extend_from_slice(b"{}");
    } else {
        // In short-name order, a name given twice keeping its last value.
        let auth: BTreeMap<&str, &str> = c
            .authorization_extensions
            .iter()
            .map(|(oid, value)| (short_name(oid), value.as_str()))
            .collect();
        json_map(out, auth);
    }
    let before = out.len();
    out.extend_from_slice(b",\"serial_number\":");
    if !SerialNumber::write_decimal(&c.serial, out) {
        out.truncate(before);
    }
    for (key, t) in [
        (&b",\"not_before\":\""[..], c.not_before),
        (b",\"not_after\":\"", c.not_after),
    ] {
        out.extend_from_slice(key);
        crate::ca::write_utc(out, t, "UTC");
        out.push(b'"');
    }
    out.push(b'}');
}

impl StatusFields {
    fn write_json(&self, out: &mut Vec<u8>) {
        let f = &self.fingerprints;
        let fps = [&f.sha1, &f.sha256, &f.sha512, &f.default].map(|s| Fp::Text(s));
        write_head(
            out,
            &self.name,
            self.state,
            Fp::Text(&self.fingerprint),
            fps,
        );
        out.extend_from_slice(b",\"dns_alt_names\":");
        json_list(out, self.dns_alt_names.iter().map(|s| ("", s.as_str())));
        out.extend_from_slice(b",\"subject_alt_names\":");
        json_list(out, self.subject_alt_names.iter().map(|s| ("", s.as_str())));
        out.extend_from_slice(b",\"authorization_extensions\":");
        json_map(
            out,
            self.authorization_extensions
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if let Some(serial) = &self.serial_number {
            out.extend_from_slice(b",\"serial_number\":");
            out.extend_from_slice(serial.get().as_bytes());
        }
        for (key, date) in [
            (&b",\"not_before\":"[..], &self.not_before),
            (b",\"not_after\":", &self.not_after),
        ] {
            if let Some(d) = date {
                out.extend_from_slice(key);
                json_str(out, "", d);
            }
        }
        out.push(b'}');
    }
}

/// A JSON string of `prefix` (nothing to escape) then `s`, as `serde_json` writes it:
/// `"` and `\\` escaped, control characters as `\b \t \n \f \r` or `\u00xx`,
/// everything else (DEL, non-ASCII) as it is.
fn json_str(out: &mut Vec<u8>, prefix: &str, s: &str) {
    // No early exit, so that the check runs many bytes at a time.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    out.push(b'"');
    out.extend_from_slice(prefix.as_bytes());
    if plain {
        out.extend_from_slice(s.as_bytes());
    } else {
        for &b in s.as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x09 => out.extend_from_slice(b"\\t"),
                0x0A => out.extend_from_slice(b"\\n"),
                0x0C => out.extend_from_slice(b"\\f"),
                0x0D => out.extend_from_slice(b"\\r"),
                0x00..=0x1F => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xF) as usize]);
                }
                _ => out.push(b),
            }
        }
    }
    out.push(b'"');
}

/// Where a paged Puppet status listing goes on (see [`App::puppet_statuses_page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusCursor {
    /// Requests after this name (from the first when `None`).
    Requests(Option<String>),
    /// Certificates after this name.
    Certificates(Option<String>),
    /// Nothing more.
    Done,
}

impl StatusCursor {
    /// Where a listing starts.
    pub fn start() -> StatusCursor {
        StatusCursor::Requests(None)
    }
}

/// Result of `POST /sign` and `/sign/all`.
#[derive(Debug, Default, Serialize)]
pub struct SignReport {
    /// Signed now.
    pub signed: Vec<String>,
    /// No pending request.
    #[serde(rename = "no-csr")]
    pub no_csr: Vec<String>,
    /// Refused or failed.
    #[serde(rename = "signing-errors")]
    pub signing_errors: Vec<String>,
}

/// Result of `GET /expirations`: CN → date.
#[derive(Debug, Serialize)]
pub struct Expirations {
    #[serde(rename = "ca-certs")]
    ca_certs: BTreeMap<String, String>,
    crls: BTreeMap<String, String>,
}

fn short_name(oid: &str) -> &str {
    crate::ca::puppet_short_name(oid).unwrap_or(oid)
}

/// A certificate's status fields, as [`write_certificate`] writes them.
#[cfg(test)]
fn cert_fields(name: &Certname, c: CertSummary) -> StatusFields {
    let auth: BTreeMap<String, String> = c
        .authorization_extensions
        .into_iter()
        .map(|(oid, value)| (short_name(&oid).to_owned(), value))
        .collect();
    let (dns, all) = alt_names(&c.dns_names, &c.ip_addrs);
    let serial = SerialNumber::from_bytes(&c.serial)
        .map(|s| s.to_decimal())
        .unwrap_or_default();
    // Puppet's default digest is SHA-256.
    let fps = super::status::infallible(super::status::cert_fingerprints(
        c.fingerprints,
        Digest::Sha256,
        || Ok(None),
    ));
    StatusFields {
        name: name.to_string(),
        state: CertState::of_certificate(c.revocation.is_some()),
        fingerprint: fps.sha256.clone(),
        fingerprints: fps,
        dns_alt_names: dns,
        subject_alt_names: all,
        authorization_extensions: auth,
        serial_number: RawValue::from_string(serial).ok(),
        not_before: Some(puppet_date(c.not_before)),
        not_after: Some(puppet_date(c.not_after)),
    }
}

fn request_status(name: &Certname, r: &RequestRecord) -> PuppetStatus {
    // As the CSR asks: its names in its order (the certname among them), and the
    // authorization extensions an admin must see before signing.
    let asked = crate::ca::requested_names(&r.csr_der);
    let (dns, all) = alt_names(&asked.dns_names, &asked.ip_addrs);
    let auth = asked
        .authorization_extensions
        .into_iter()
        .map(|(oid, value)| (short_name(&oid).to_owned(), value))
        .collect();
    let fps = fingerprints(&r.csr_der, Digest::Sha256);
    PuppetStatus::Request(StatusFields {
        name: name.to_string(),
        state: CertState::Requested,
        fingerprint: fps.sha256.clone(),
        fingerprints: fps,
        dns_alt_names: dns,
        subject_alt_names: all,
        authorization_extensions: auth,
        serial_number: None,
        not_before: None,
        not_after: None,
    })
}

/// Whether the Puppet face lists `r` as requested: a pending request, or a CSR the
/// policy refused at submission and kept (Puppet Server keeps such CSRs where
/// `puppetserver ca list` shows them; signing one answers why it cannot be).
fn listed_as_requested(r: &RequestRecord) -> bool {
    matches!(
        r.state,
        RequestState::Requested | RequestState::Invalid { rule: Some(_), .. }
    )
}

fn pending(r: &Option<RequestRecord>) -> bool {
    r.as_ref().is_some_and(pending_record)
}

fn pending_record(r: &RequestRecord) -> bool {
    r.state == RequestState::Requested
}

/// Names per store transaction in a bulk clean: large enough that 10,000 names are a
/// few dozen commits, small enough that one transaction stays a few megabytes.
const CLEAN_BATCH: usize = 256;

impl App {
    fn puppet_env(&self) -> Result<std::sync::Arc<EnvCa>, AppError> {
        self.env_ca(PUPPET_ENV)
    }

    /// `PUT certificate_request/{name}` with Puppet's rules: a pending request is a
    /// duplicate like a signed certificate (400 for the agent, which then polls).
    pub fn puppet_submit(
        &self,
        who: &Identity,
        raw_name: &str,
        body: &[u8],
    ) -> Result<Submitted, AppError> {
        self.submit_as(who, PUPPET_ENV, raw_name, body, true, false)
    }

    /// [`App::puppet_submit`] made again (see [`App::submit_again`]).
    pub fn puppet_submit_again(
        &self,
        who: &Identity,
        raw_name: &str,
        body: &[u8],
        read_first: bool,
    ) -> Result<Submitted, AppError> {
        self.submit_as(who, PUPPET_ENV, raw_name, body, true, read_first)
    }

    /// [`App::puppet_submit`] started on a thread that must not block (see
    /// [`App::submit_start`]).
    pub fn puppet_submit_start(&self, who: &Identity, raw_name: &str, body: &[u8]) -> Submitting {
        self.start_as(who, PUPPET_ENV, raw_name, body, true)
    }

    /// `GET certificate/{name}`: the certificate file as Puppet keeps it (revoked ones
    /// too) and when it was issued.
    pub fn puppet_certificate(&self, raw_name: &str) -> Result<(Vec<u8>, UnixTime), AppError> {
        let env = self.puppet_env()?;
        let name = certname(raw_name)?;
        let found = self.store.certificate(&env.name, &name)?;
        puppet_certificate_file(&name, found)
    }

    /// [`App::puppet_certificate`] if the store can answer without waiting on the
    /// network; `None`: call that where blocking is allowed.
    pub fn puppet_certificate_now(
        &self,
        raw_name: &str,
    ) -> Option<Result<(Vec<u8>, UnixTime), AppError>> {
        self.certificate_read_now(self.puppet_env(), raw_name, |_, name, found| {
            puppet_certificate_file(&name, found)
        })
    }

    /// `GET certificate/ca`: the bundle (issuing CA first, root last) and its mtime.
    pub fn puppet_ca_bundle(&self) -> Result<(Vec<u8>, UnixTime), AppError> {
        let env = self.puppet_env()?;
        Ok((env.chain_pem.clone(), env.chain_modified))
    }

    /// `GET certificate_status/{name}`: the certificate's status, else the pending
    /// request's.
    pub fn puppet_status(&self, raw_name: &str) -> Result<PuppetStatus, AppError> {
        let name = certname(raw_name)?;
        let env = self.puppet_env()?;
        if let Some(c) = self.store.certificate(&env.name, &name)? {
            return Ok(PuppetStatus::Certificate(name, c.summary()));
        }
        match self.store.request(&env.name, &name)? {
            Some(r) if listed_as_requested(&r) => Ok(request_status(&name, &r)),
            _ => Err(AppError::NotFound("Resource not found.".into())),
        }
    }

    /// `GET certificate_statuses/...?state=`, one page: pending requests, then
    /// certificates, at most `limit` records read from `from` on; answers the statuses
    /// that pass `state` and where the next page starts. A full listing is a loop over
    /// pages, so neither the store's records nor the answer need be in memory at once.
    pub fn puppet_statuses_page(
        &self,
        state: Option<CertState>,
        from: StatusCursor,
        limit: usize,
    ) -> Result<(Vec<PuppetStatus>, StatusCursor), AppError> {
        let env = self.puppet_env()?;
        let mut out = Vec::new();
        let next = match from {
            StatusCursor::Requests(after) if state.is_none_or(|s| s == CertState::Requested) => {
                let batch = self.store.requests(&env.name, after.as_deref(), limit)?;
                let next = match batch.last() {
                    Some((n, _)) if batch.len() == limit => {
                        StatusCursor::Requests(Some(n.to_string()))
                    }
                    _ => StatusCursor::Certificates(None),
                };
                for (n, r) in &batch {
                    if listed_as_requested(r) {
                        out.push(request_status(n, r));
                    }
                }
                next
            }
            StatusCursor::Requests(_) => StatusCursor::Certificates(None),
            StatusCursor::Certificates(_) if state == Some(CertState::Requested) => {
                StatusCursor::Done
            }
            StatusCursor::Certificates(after) => {
                let batch = self
                    .store
                    .certificates(&env.name, after.as_deref(), limit)?;
                let next = match batch.last() {
                    Some((n, _)) if batch.len() == limit => {
                        StatusCursor::Certificates(Some(n.to_string()))
                    }
                    _ => StatusCursor::Done,
                };
                for (n, c) in batch {
                    let st = CertState::of_certificate(c.revocation.is_some());
                    if state.is_none_or(|s| s == st) {
                        out.push(PuppetStatus::Certificate(n, c));
                    }
                }
                next
            }
            StatusCursor::Done => StatusCursor::Done,
        };
        Ok((out, next))
    }

    /// `PUT certificate_status/{name}` with Puppet's conflicts and messages.
    pub fn puppet_set_status(
        &self,
        who: &Identity,
        raw_name: &str,
        sign: bool,
        ttl: Option<i64>,
    ) -> Result<(), AppError> {
        let name = certname(raw_name)?;
        let env = self.puppet_env()?;
        let cert = self.store.certificate(&env.name, &name)?;
        let req = self.store.request(&env.name, &name)?;
        let listed = req.as_ref().is_some_and(listed_as_requested);
        if cert.is_none() && !listed {
            return Err(AppError::NotFound("Invalid certificate subject.".into()));
        }
        if sign {
            // Listed, not pending: refused at submission and kept.
            if let Some(refused) = req.as_ref().filter(|r| listed && !pending_record(r)) {
                // Told why to who may sign it, as a pending request's signer would be.
                self.may_act_on_stored(who, &env, &name, Acted::Request, "signs")?;
                return Err(self.why_unsignable(&env, &name, refused));
            }
            if !pending(&req) {
                return Err(AppError::Conflict {
                    code: "no-request",
                    detail: format!(
                        "Cannot sign certificate for host {name} without a certificate request"
                    ),
                });
            }
            return self.sign_pending(who, &env, &name, ttl).map(|_| ());
        }
        if cert.is_none() {
            return Err(AppError::Conflict {
                code: "not-signed",
                detail: format!(
                    "Cannot revoke certificate for host {name} without a signed certificate"
                ),
            });
        }
        self.revoke(who, PUPPET_ENV, name.as_str(), Some("keyCompromise"))
    }

    /// `GET /puppet-ca/v1/certificate_request/{name}`: the CSR of every request the face
    /// lists as requested, those the policy refused at submission included (Puppet
    /// Server serves the CSR files it keeps); else 404.
    pub fn puppet_request(&self, raw_name: &str) -> Result<super::RequestView, AppError> {
        let name = certname(raw_name)?;
        let env = self.puppet_env()?;
        match self.store.request(&env.name, &name)? {
            Some(r) if listed_as_requested(&r) => Ok(super::RequestView {
                certname: name,
                csr_der: r.csr_der,
            }),
            _ => Err(AppError::NotFound(format!(
                "no certificate request for {name}"
            ))),
        }
    }

    /// Why a CSR the policy refused at submission (kept, listed as requested) cannot be
    /// signed: the policy's message as it reads the CSR now (Puppet Server validates at
    /// signing), or, where the policy has changed since, that it must be sent again.
    fn why_unsignable(&self, env: &EnvCa, name: &Certname, refused: &RequestRecord) -> AppError {
        let policy = env.settings.csr_policy(&self.config.limits);
        match ValidatedCsr::parse(&refused.csr_der, name, &policy) {
            Err(e) => AppError::CsrRejected(e),
            Ok(_) => AppError::Conflict {
                code: "request-invalid",
                detail: format!(
                    "The certificate request of {name} was refused when it was submitted; the agent must submit it again"
                ),
            },
        }
    }

    /// `DELETE certificate_status/{name}`: certd revokes before forgetting, so that no
    /// valid certificate is ever left unrevokable (Puppet deletes without revoking).
    pub fn puppet_delete(&self, who: &Identity, raw_name: &str) -> Result<(), AppError> {
        self.clean(who, PUPPET_ENV, raw_name).map_err(|e| match e {
            AppError::NotFound(_) => AppError::NotFound("Resource not found.".into()),
            other => other,
        })
    }

    /// `DELETE certificate_request/{name}`: removes a pending request.
    pub fn puppet_delete_request(&self, who: &Identity, raw_name: &str) -> Result<(), AppError> {
        let env = self.puppet_env()?;
        let name = certname(raw_name)?;
        self.may_drop_request(who, &env, &name)?;
        if let Some(rec) = self.store.request(&env.name, &name)? {
            self.cancel_order(&env, &name, &rec);
        }
        if !self.store.cancel_request(&env.name, &name, self.now())? {
            return Err(AppError::NotFound(format!(
                "No certificate request for {name}"
            )));
        }
        self.store.flush()?;
        Ok(())
    }

    /// `PUT /clean`: revokes and forgets every named certificate, a few hundred names per
    /// store transaction, with one CRL rebuild; returns the names that had no
    /// certificate (those are left alone, their requests too, as on Puppet Server).
    pub fn puppet_clean(
        &self,
        who: &Identity,
        raw_names: &[String],
    ) -> Result<Vec<String>, AppError> {
        let env = self.puppet_env()?;
        let revocation = Revocation {
            revoked_at: self.now(),
            reason: crate::ca::RevocationReason::KeyCompromise,
        };
        let parsed: Vec<Option<Certname>> =
            raw_names.iter().map(|r| Certname::parse(r).ok()).collect();
        let names: Vec<Certname> = parsed.iter().flatten().cloned().collect();
        // All or nothing: one name the caller may not clean refuses the whole list.
        for name in &names {
            self.may_act_on_stored(who, &env, name, Acted::Certificate, "cleans")?;
        }
        let mut outcomes = Vec::with_capacity(names.len());
        let mut revoked = Vec::new();
        let mut failed = None;
        for chunk in names.chunks(CLEAN_BATCH) {
            match self.store.clean_certified(&env.name, chunk, revocation) {
                Ok(done) => {
                    revoked.extend(done.iter().filter_map(|o| match o {
                        CleanOutcome::Cleaned {
                            revoked: Some(serial),
                        } => Some(RevokedSerial {
                            serial: serial.clone(),
                            revocation,
                        }),
                        _ => None,
                    }));
                    outcomes.extend(done);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // Whatever was committed goes on the CRL, even when a later batch failed.
        if !revoked.is_empty() {
            self.rebuild_crl(&env, Some(&revoked))?;
        }
        self.store.flush()?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        // Names that do not parse and names without a certificate, in the order given.
        let mut outcomes = outcomes.into_iter();
        let mut missing = Vec::new();
        for (raw, name) in raw_names.iter().zip(&parsed) {
            let absent = match name {
                None => true,
                Some(_) => matches!(outcomes.next(), Some(CleanOutcome::NotFound)),
            };
            if absent {
                missing.push(raw.clone());
            }
        }
        Ok(missing)
    }

    /// `POST /sign` (names given) and `/sign/all` (every pending request).
    pub fn puppet_sign(
        &self,
        who: &Identity,
        names: Option<&[String]>,
    ) -> Result<SignReport, AppError> {
        let env = self.puppet_env()?;
        let policy = env.settings.csr_policy(&self.config.limits);
        let mut report = SignReport::default();
        // Named: whatever each has pending. A sweep: the CSRs it read, each signed only
        // if still the one pending (another may have replaced it since).
        let names: Vec<(String, Option<ValidatedCsr>)> = match names {
            Some(n) => n.iter().map(|n| (n.clone(), None)).collect(),
            None => {
                let mut swept = Vec::new();
                for (n, r) in self.store.requests(&env.name, None, usize::MAX)? {
                    if !pending_record(&r) {
                        // Listed as requested, refused at submission: it cannot be
                        // signed, as a named sign reports.
                        if listed_as_requested(&r) {
                            report.signing_errors.push(n.to_string());
                        }
                        continue;
                    }
                    match ValidatedCsr::parse(&r.csr_der, &n, &policy) {
                        Err(_) => report.signing_errors.push(n.to_string()),
                        // A request that would hold authority is signed when named,
                        // never in a sweep.
                        Ok(csr) if self.holds_authority(&env, &csr.subject()) => {}
                        Ok(csr) => swept.push((n.to_string(), Some(csr))),
                    }
                }
                swept
            }
        };
        for (raw, csr) in names {
            let outcome = Certname::parse(&raw)
                .map_err(AppError::from)
                .and_then(|n| self.approve(&env, &n, None, csr, Some(who)));
            match outcome {
                Ok(_) => report.signed.push(raw),
                // No CSR: none stored, one signed already, or a name none can have.
                Err(
                    AppError::NotFound(_)
                    | AppError::Conflict {
                        code: "already-signed",
                        ..
                    }
                    | AppError::InvalidInput(_),
                ) => report.no_csr.push(raw),
                Err(AppError::Store(e)) => return Err(AppError::Store(e)),
                Err(_) => report.signing_errors.push(raw),
            }
        }
        Ok(report)
    }

    /// `POST /certificate_renewal`: a new certificate for the caller's own (current,
    /// unrevoked) certificate: same subject, key, SANs and Puppet extensions, new serial,
    /// validity `auto_renewal_cert_ttl` but never longer than the old certificate's. The
    /// old certificate is revoked (`superseded`) in the same transaction, and is on the
    /// CRL and refused by the TLS layer before the answer goes out (Puppet Server leaves
    /// it valid: a node would then hold two certificates, and revoking it one).
    pub fn puppet_renew(&self, who: &Identity) -> Result<Vec<u8>, AppError> {
        let (Some(name), Some(serial)) = (&who.certname, &who.serial) else {
            return Err(AppError::BadRequest {
                code: "no-certificate",
                detail: "No valid certificate found in renewal request".into(),
            });
        };
        let env = self.puppet_env()?;
        let mismatch = || AppError::CertificateMismatch;
        if who.environment.as_ref() != Some(&env.name) {
            return Err(mismatch());
        }
        if !env.settings.allow_auto_renewal {
            return Err(AppError::NotFound("Not Found".into()));
        }
        let current = self
            .store
            .certificate(&env.name, name)?
            .filter(|c| &c.serial == serial && c.revocation.is_none())
            .ok_or_else(mismatch)?;
        // Each renewal revokes its predecessor: a loop of them would grow the CRL.
        let lifetime = current.not_after - current.issued_at;
        let min_age = env
            .settings
            .min_renewal_age
            .map_or(lifetime / 10, |d| d.as_secs());
        let age = self.now() - current.issued_at;
        if age < min_age {
            let retry_after = (min_age - age).max(1) as u64;
            return Err(AppError::TooSoon {
                detail: format!(
                    "{name}'s certificate is renewed once it is {min_age} s old; try again in {retry_after} s"
                ),
                retry_after,
            });
        }
        let _slot = self.signing_slot()?;
        let (subject, key, kind) = crate::ca::Subject::from_certificate(&current.der)?;
        // A certificate that names certd's server (issued before that was refused) is
        // not made again.
        self.check_server_names(&subject)?;
        // No more life than the certificate had: a renewal must not undo an admin's
        // short validity.
        let had = current.not_after - current.not_before - crate::ca::Profile::DEFAULT_BACKDATE;
        let validity = env.settings.auto_renewal_cert_ttl.as_secs().min(had.max(1));
        let profile = crate::ca::Profile::new(kind, validity);
        for _ in 0..3 {
            let der = env.ca.sign_leaf(
                &subject,
                &key,
                &profile,
                self.clock.as_ref(),
                self.rng.as_ref(),
            )?;
            let record = super::certificates::cert_record(&der, self.now())?;
            let outcome = self.store.renew(&env.name, name, serial, &record)?;
            if outcome != crate::store::RenewOutcome::Renewed {
                self.metrics.discarded(env.name.as_str());
            }
            match outcome {
                crate::store::RenewOutcome::Renewed => {
                    let superseded = crate::store::RevokedSerial {
                        serial: serial.clone(),
                        revocation: crate::store::Revocation {
                            revoked_at: record.issued_at,
                            reason: crate::ca::RevocationReason::Superseded,
                        },
                    };
                    self.rebuild_crl(&env, Some(&[superseded]))?;
                    self.store.flush()?;
                    tracing::info!(certname = %name, "renewed");
                    return Ok(crate::ca::pem_encode("CERTIFICATE", &der));
                }
                crate::store::RenewOutcome::SerialTaken => continue,
                crate::store::RenewOutcome::NotCurrent => return Err(mismatch()),
            }
        }
        Err(AppError::Pki(crate::ca::CaError::BadCertificate(
            "could not draw an unused serial number".into(),
        )))
    }

    /// `GET /expirations`: every CA certificate's `notAfter` and CRL's `nextUpdate`.
    pub fn puppet_expirations(&self) -> Result<Expirations, AppError> {
        let env = self.puppet_env()?;
        let cn = |der: &[u8]| {
            CertInfo::from_der(der)
                .ok()
                .and_then(|i| i.common_name)
                .unwrap_or_default()
        };
        let issuing = env.ca.cert().to_der().map_err(crate::ca::CaError::from)?;
        let root = self
            .root
            .cert()
            .to_der()
            .map_err(crate::ca::CaError::from)?;
        let mut ca_certs = BTreeMap::new();
        ca_certs.insert(cn(&issuing), puppet_date(env.ca.not_after()?));
        ca_certs.insert(cn(&root), puppet_date(self.root.not_after()?));
        let mut crls = BTreeMap::new();
        crls.insert(
            cn(&issuing),
            puppet_date(
                env.crl
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .meta
                    .next_update,
            ),
        );
        let root_next = self.root_crl_view().meta.next_update;
        crls.insert(cn(&root), puppet_date(root_next));
        Ok(Expirations { ca_certs, crls })
    }
}

/// The certificate file Puppet serves (revoked ones too) and when it was issued.
fn puppet_certificate_file(
    name: &Certname,
    found: Option<crate::store::CertRecord>,
) -> Result<(Vec<u8>, UnixTime), AppError> {
    let c =
        found.ok_or_else(|| AppError::NotFound(format!("Could not find certificate {name}")))?;
    Ok((crate::ca::pem_encode("CERTIFICATE", &c.der), c.issued_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::DigestValue;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Mostly plain, sometimes every kind of character JSON escapes (and some it
        // does not: DEL, non-ASCII).
        prop_oneof![
            "[a-z0-9.:-]{0,40}",
            proptest::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('\u{7f}'),
                    Just('é'),
                    Just('\u{2028}'),
                    (0u8..0x20).prop_map(char::from),
                    proptest::char::range(' ', '~'),
                ],
                0..12
            )
            .prop_map(|v| v.into_iter().collect()),
        ]
    }

    proptest! {
        #[test]
        fn status_json_is_byte_for_byte_what_serde_writes(
            strings in proptest::collection::vec(text(), 8),
            names in proptest::collection::vec(text(), 0..3),
            ext in proptest::collection::btree_map(text(), text(), 0..3),
            serial in proptest::option::of(any::<u64>()),
            dates in any::<bool>(),
        ) {
            let fields = StatusFields {
                name: strings[0].clone(),
                state: CertState::Signed,
                fingerprint: strings[1].clone(),
                fingerprints: Fingerprints {
                    sha1: strings[2].clone(),
                    sha256: strings[3].clone(),
                    sha512: strings[4].clone(),
                    default: strings[5].clone(),
                },
                dns_alt_names: names.clone(),
                subject_alt_names: names.iter().rev().cloned().collect(),
                authorization_extensions: ext,
                serial_number: serial.and_then(|n| RawValue::from_string(n.to_string()).ok()),
                not_before: dates.then(|| strings[6].clone()),
                not_after: dates.then(|| strings[7].clone()),
            };
            let reference = serde_json::to_string(&fields).unwrap();
            let mut ours = Vec::new();
            PuppetStatus::Request(fields).write_json(&mut ours);
            prop_assert_eq!(String::from_utf8(ours).unwrap(), reference);
        }

        #[test]
        fn certificate_json_is_byte_for_byte_what_serde_writes_of_its_fields(
            name in "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?",
            digests in prop_oneof![
                proptest::collection::vec(any::<u8>(), 116),
                Just(vec![0; 116]),
            ],
            dns in proptest::collection::vec(text(), 0..3),
            ips in proptest::collection::vec(text(), 0..3),
            ext in proptest::collection::vec(
                (
                    prop_oneof![
                        Just("1.3.6.1.4.1.34380.1.3.39".to_owned()),
                        Just("1.3.6.1.4.1.34380.1.3.13".to_owned()),
                        text(),
                    ],
                    text(),
                ),
                0..4,
            ),
            serial in proptest::collection::vec(any::<u8>(), 0..23),
            before in -70_000_000_000_i64..300_000_000_000,
            after in any::<i64>(),
            revoked in any::<bool>(),
        ) {
            let name = Certname::parse(&name).unwrap();
            let c = CertSummary {
                serial,
                issued_at: 0,
                not_before: before,
                not_after: after,
                dns_names: dns,
                ip_addrs: ips,
                authorization_extensions: ext,
                revocation: revoked.then_some(Revocation {
                    revoked_at: 1,
                    reason: crate::ca::RevocationReason::KeyCompromise,
                }),
                fingerprints: crate::store::StoredFingerprints {
                    sha1: DigestValue(digests[..20].try_into().unwrap()),
                    sha256: DigestValue(digests[20..52].try_into().unwrap()),
                    sha512: DigestValue(digests[52..].try_into().unwrap()),
                },
            };
            let reference = serde_json::to_string(&cert_fields(&name, c.clone())).unwrap();
            let mut ours = Vec::new();
            PuppetStatus::Certificate(name, c).write_json(&mut ours);
            prop_assert_eq!(String::from_utf8(ours).unwrap(), reference);
        }
    }
}
