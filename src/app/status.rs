//! The status resource: one JSON object with everything about a name (a superset of
//! Puppet's), and desired-state changes.

use serde::Serialize;

use super::{certname, App, AppError};
use crate::ca::{Certname, Digest, EnvName, Fingerprint, SerialNumber, UnixTime};
use crate::store::{
    CertState, CertSummary, RequestRecord, RequestState, StoredFingerprints, SubStatus,
};

/// Fingerprints of the DER under Puppet's three digests, plus the configured default.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Fingerprints {
    /// SHA-1.
    #[serde(rename = "SHA1")]
    pub sha1: String,
    /// SHA-256.
    #[serde(rename = "SHA256")]
    pub sha256: String,
    /// SHA-512.
    #[serde(rename = "SHA512")]
    pub sha512: String,
    /// The configured default digest.
    pub default: String,
}

/// The status object of the native API (`manual::api`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusObject {
    /// The certname.
    pub name: String,
    /// The environment.
    pub environment: String,
    /// `requested`, `signed`, `revoked`, `invalid` or `error`.
    pub state: CertState,
    /// Fingerprint under the default digest (of the certificate, or of the CSR).
    pub fingerprint: String,
    /// Fingerprints under several digests.
    pub fingerprints: Fingerprints,
    /// DNS names, each `DNS:`-prefixed.
    pub dns_alt_names: Vec<String>,
    /// IP names (`IP:`) first, then DNS names.
    pub subject_alt_names: Vec<String>,
    /// Serial in uppercase hex (certificates only; 128-bit serials do not fit a JSON
    /// number safely).
    pub serial_number: Option<String>,
    /// RFC 3339.
    pub not_before: Option<String>,
    /// RFC 3339.
    pub not_after: Option<String>,
    /// Issuance progress (asynchronous issuers).
    pub sub_status: Option<SubStatus>,
    /// Issuance progress message.
    pub sub_status_message: Option<String>,
    /// Why a request is invalid.
    pub error_message: Option<String>,
    /// RFC 3339.
    pub revoked_at: Option<String>,
    /// RFC 5280 reason name.
    pub revocation_reason: Option<&'static str>,
    /// The order, while an issuer that answers later has the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderStatus>,
}

/// Where an order stands (asynchronous issuers).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OrderStatus {
    /// The issuer serving it.
    pub issuer: String,
    /// Calls made to it so far.
    pub attempts: u32,
    /// RFC 3339: when it was approved.
    pub approved_at: String,
    /// When the next call is due, Unix milliseconds.
    pub next_attempt_ms: i64,
}

/// A desired state for `PUT certificate_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredState {
    /// Sign the pending request.
    Signed,
    /// Revoke the certificate.
    Revoked,
}

/// RFC 3339 UTC.
pub fn rfc3339(t: UnixTime) -> String {
    crate::ca::format_utc(t, "Z")
}

/// A certificate's fingerprints: those stored at issue time; one under an unusual
/// default digest (MD5, SHA-224, SHA-384) is computed from the DER `der` reads, which a
/// listing does only then (a point read per item).
pub(super) fn cert_fingerprints<E>(
    s: StoredFingerprints,
    default: Digest,
    der: impl FnOnce() -> Result<Option<Vec<u8>>, E>,
) -> Result<Fingerprints, E> {
    let (sha1, sha256, sha512) = (
        s.sha1.to_string(),
        s.sha256.to_string(),
        s.sha512.to_string(),
    );
    let default = match default {
        Digest::Sha1 => sha1.clone(),
        Digest::Sha256 => sha256.clone(),
        Digest::Sha512 => sha512.clone(),
        // Not stored: computed from the DER. `None` only when the certificate went away
        // (a clean) between the listing's scan and this read.
        other => der()?
            .map(|d| Fingerprint::of_der(&d, other).to_string())
            .unwrap_or_default(),
    };
    Ok(Fingerprints {
        sha1,
        sha256,
        sha512,
        default,
    })
}

/// The value of a computation that cannot fail (its DER is at hand, or not needed).
pub(super) fn infallible<T>(r: Result<T, std::convert::Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

pub(super) fn fingerprints(der: &[u8], default: Digest) -> Fingerprints {
    let fp = |d| Fingerprint::of_der(der, d).to_string();
    Fingerprints {
        sha1: fp(Digest::Sha1),
        sha256: fp(Digest::Sha256),
        sha512: fp(Digest::Sha512),
        default: fp(default),
    }
}

/// `DNS:`-prefixed names, and all names with `IP:` ones first (Puppet's order).
pub(super) fn alt_names(dns: &[String], ips: &[String]) -> (Vec<String>, Vec<String>) {
    let dns: Vec<String> = dns.iter().map(|d| format!("DNS:{d}")).collect();
    let mut all: Vec<String> = ips.iter().map(|i| format!("IP:{i}")).collect();
    all.extend(dns.iter().cloned());
    (dns, all)
}

/// The status of a certificate.
pub(super) fn of_certificate<E>(
    env: &EnvName,
    name: &Certname,
    c: CertSummary,
    digest: Digest,
    der: impl FnOnce() -> Result<Option<Vec<u8>>, E>,
) -> Result<StatusObject, E> {
    let fps = cert_fingerprints(c.fingerprints, digest, der)?;
    let (dns_alt_names, subject_alt_names) = alt_names(&c.dns_names, &c.ip_addrs);
    Ok(StatusObject {
        name: name.to_string(),
        environment: env.to_string(),
        state: CertState::of_certificate(c.revocation.is_some()),
        fingerprint: fps.default.clone(),
        fingerprints: fps,
        dns_alt_names,
        subject_alt_names,
        serial_number: SerialNumber::from_bytes(&c.serial)
            .ok()
            .map(|s| s.to_string()),
        not_before: Some(rfc3339(c.not_before)),
        not_after: Some(rfc3339(c.not_after)),
        sub_status: None,
        sub_status_message: None,
        error_message: None,
        revoked_at: c.revocation.map(|r| rfc3339(r.revoked_at)),
        revocation_reason: c.revocation.map(|r| r.reason.name()),
        order: None,
    })
}

/// The status of a request.
pub(super) fn of_request(
    env: &EnvName,
    name: &Certname,
    r: &RequestRecord,
    digest: Digest,
) -> StatusObject {
    let fps = fingerprints(&r.csr_der, digest);
    let mut dns = vec![name.to_string()];
    dns.extend(r.dns_names.iter().cloned());
    let (dns_alt_names, subject_alt_names) = alt_names(&dns, &r.ip_addrs);
    let state = CertState::of_request(&r.state);
    let error_message = match &r.state {
        RequestState::Requested => None,
        RequestState::Invalid { reason, .. } | RequestState::Error { reason } => {
            Some(reason.clone())
        }
    };
    StatusObject {
        name: name.to_string(),
        environment: env.to_string(),
        state,
        fingerprint: fps.default.clone(),
        fingerprints: fps,
        dns_alt_names,
        subject_alt_names,
        serial_number: None,
        not_before: None,
        not_after: None,
        sub_status: r.order.as_ref().map(|o| o.sub_status),
        sub_status_message: r.order.as_ref().map(|o| o.sub_status_message.clone()),
        error_message,
        revoked_at: None,
        revocation_reason: None,
        order: r.order.as_ref().map(|o| OrderStatus {
            issuer: o.issuer.clone(),
            attempts: o.attempts,
            approved_at: rfc3339(o.approved_at),
            next_attempt_ms: o.due_ms,
        }),
    }
}

impl App {
    /// The JSON status of a certificate the caller may already read (the `application/json`
    /// representation of a certificate resource).
    pub fn certificate_status(&self, view: &super::CertificateView) -> StatusObject {
        let status = of_certificate(
            &view.env,
            &view.certname,
            view.record.summary(),
            self.config.ca.fingerprint_digest,
            || Ok(Some(view.record.der.clone())),
        );
        infallible(status)
    }

    /// `GET /{env}/certificate_status/{name}`: the certificate's status when there is
    /// one, else the request's; 404 when neither.
    pub fn status_of(&self, raw_env: &str, raw_name: &str) -> Result<StatusObject, AppError> {
        let name = certname(raw_name)?;
        let env = self.env_ca(raw_env)?;
        let digest = self.config.ca.fingerprint_digest;
        if let Some(c) = self.store.certificate(&env.name, &name)? {
            return of_certificate(&env.name, &name, c.summary(), digest, || {
                Ok::<_, AppError>(Some(c.der.clone()))
            });
        }
        match self.store.request(&env.name, &name)? {
            Some(r) => Ok(of_request(&env.name, &name, &r, digest)),
            None => Err(AppError::NotFound(format!(
                "no certificate or request for {name}"
            ))),
        }
    }

    /// `PUT /{env}/certificate_status/{name}`: moves to the desired state. Signing an
    /// already signed name, or revoking one with no certificate, is a conflict; revoking
    /// a revoked certificate is not. True when done now; false when an issuer that
    /// answers later has the order (202).
    pub fn set_status(
        &self,
        who: &crate::authz::Identity,
        raw_env: &str,
        raw_name: &str,
        desired: DesiredState,
        ttl: Option<i64>,
    ) -> Result<bool, AppError> {
        match desired {
            DesiredState::Signed => Ok(matches!(
                self.sign(who, raw_env, raw_name, ttl)?,
                super::Signing::Issued(_)
            )),
            DesiredState::Revoked => {
                let env = self.env_ca(raw_env)?;
                let name = certname(raw_name)?;
                if self.store.certificate(&env.name, &name)?.is_none() {
                    if self.store.request(&env.name, &name)?.is_some() {
                        return Err(AppError::Conflict {
                            code: "not-signed",
                            detail: format!("{name} has no signed certificate to revoke"),
                        });
                    }
                    return Err(AppError::NotFound(format!(
                        "no certificate or request for {name}"
                    )));
                }
                self.revoke(who, raw_env, raw_name, None).map(|()| true)
            }
        }
    }
}
