//! Issuers (`manual::issuers`): the back ends that turn an
//! approved request into a certificate, now or later.
//!
//! The core trait is small: `issue` a new order, `check` it again when it falls due.
//! Optional capabilities (`Modify`, `Cancel`) are separate traits an issuer may offer.
//! An issuer owns a small string map, its `plugin_meta`, that the core persists with the
//! order and hands back on every call. Issuers never touch the store: `orders` and `app`
//! apply their outcomes.

mod cfssl;
mod command;
mod local;
mod puppet_ca;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use openssl::x509::X509;

use crate::ca::{CaPair, CertInfo, Clock, EnvName, Rng, ValidatedCsr};
use crate::config::{Backend, IssuerKind, IssuerSpec};

pub use command::{run_bounded, RunError};

/// What an issuer keeps about an order between calls.
pub type PluginMeta = BTreeMap<String, String>;

/// An approved request, as issuers see it.
#[derive(Debug, Clone, Copy)]
pub struct OrderRequest<'a> {
    /// The environment.
    pub env: &'a EnvName,
    /// The CSR, validated under the environment's policy.
    pub csr: &'a ValidatedCsr,
    /// The validity asked for, in seconds.
    pub validity: i64,
    /// The time of the call (a returned certificate must be valid then).
    pub now: crate::ca::UnixTime,
}

/// An issuer's answer (barbican's `CertificateStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the certificate, DER, already checked to carry the CSR's key and name.
    Issued {
        /// The certificate.
        cert_der: Vec<u8>,
    },
    /// Accepted; ask again (`check`) after `retry_after` seconds.
    Waiting {
        /// Seconds.
        retry_after: i64,
        /// For `sub_status_message`.
        message: String,
    },
    /// The CA could not be reached; try again after `retry_after` seconds.
    Unavailable {
        /// Seconds.
        retry_after: i64,
        /// For `sub_status_message`.
        message: String,
    },
    /// The CA has a problem with the request's data but keeps the order open.
    ClientDataIssue {
        /// Seconds.
        retry_after: i64,
        /// For `sub_status_message`.
        message: String,
    },
    /// The CA canceled the order.
    Canceled {
        /// Why.
        message: String,
    },
    /// The CA refused for good.
    Failed {
        /// Why.
        message: String,
    },
}

/// The core of a back end.
pub trait Issuer: Send + Sync + fmt::Debug {
    /// Whether the back end can take orders now (a cheap probe; called periodically).
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    /// Starts an order. `meta` is empty on the first call for an order.
    fn issue(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome;
    /// Looks again at an order `issue` left waiting.
    fn check(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome;
    /// Whether it answers at once, in process (the built-in CA): its orders are signed in
    /// the request, not handed to the order worker.
    fn in_process(&self) -> bool {
        false
    }
    /// The capability to replace an order's CSR, if the back end has it.
    fn modifier(&self) -> Option<&dyn Modify> {
        None
    }
    /// The capability to withdraw an order, if the back end has it.
    fn canceller(&self) -> Option<&dyn Cancel> {
        None
    }
}

/// Replacing the CSR of an order under way.
pub trait Modify {
    /// `req` carries the new CSR; `meta` is the order's.
    fn modify(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome;
}

/// Withdrawing an order under way.
pub trait Cancel {
    /// Withdraws the order; `Canceled` when done.
    fn cancel(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome;
}

/// Why an issuer could not be built from its settings.
#[derive(Debug, thiserror::Error)]
#[error("issuer {name}: {message}")]
pub struct IssuerError {
    /// The issuer's name.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// A configured issuer: its settings and its back end.
#[derive(Debug, Clone)]
pub struct Configured {
    /// Its name (for `/status`, orders and events).
    pub name: String,
    /// Its back end type.
    pub kind: IssuerKind,
    /// The settings it was built from.
    pub spec: IssuerSpec,
    /// The back end.
    pub backend: Arc<dyn Issuer>,
}

impl Configured {
    /// Whether this issuer serves `req` (its `certnames` globs; none: every name).
    pub fn supports(&self, req: &OrderRequest<'_>) -> bool {
        self.spec.certnames.is_empty()
            || self
                .spec
                .certnames
                .iter()
                .any(|g| crate::ca::domain_glob_matches(g, req.csr.certname().as_str()))
    }
}

/// What the built-in back end needs.
pub struct LocalParts {
    /// The environment's issuing CA.
    pub ca: CaPair,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Serial numbers.
    pub rng: Arc<dyn Rng>,
}

/// Builds an environment's issuers from its settings. Relative file names are taken
/// from the working directory.
pub fn build(specs: &[IssuerSpec], local: LocalParts) -> Result<Vec<Configured>, IssuerError> {
    let mut out = Vec::new();
    for spec in specs {
        let name = spec.display_name();
        let err = |message: String| IssuerError {
            name: name.clone(),
            message,
        };
        spec.validate().map_err(err)?;
        let backend: Arc<dyn Issuer> = match &spec.backend {
            Backend::Local => Arc::new(local::Local::new(
                local.ca.clone(),
                local.clock.clone(),
                local.rng.clone(),
            )),
            Backend::Cfssl(c) => Arc::new(cfssl::Cfssl::new(c).map_err(err)?),
            Backend::PuppetCa(p) => Arc::new(puppet_ca::PuppetCa::new(p).map_err(err)?),
            Backend::Command(c) => Arc::new(command::CommandIssuer::new(c).map_err(err)?),
        };
        out.push(Configured {
            name,
            kind: spec.kind(),
            spec: spec.clone(),
            backend,
        });
    }
    Ok(out)
}

/// Most bytes certd reads of one answer from a back end or webhook receiver: a
/// certificate or a status is a few kilobytes, and a larger answer is refused without
/// being held (a 50 MB answer once took certd from 99 to 240 MB).
pub const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// The body of `r`, at most [`MAX_ANSWER_BYTES`]; an error beyond, read no further.
pub(crate) fn read_capped(r: reqwest::blocking::Response) -> Result<Vec<u8>, String> {
    use std::io::Read;
    if r.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES) {
        return Err(format!(
            "the answer is larger than {MAX_ANSWER_BYTES} bytes"
        ));
    }
    let mut body = Vec::new();
    r.take(MAX_ANSWER_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("the answer could not be read: {e}"))?;
    if body.len() as u64 > MAX_ANSWER_BYTES {
        return Err(format!(
            "the answer is larger than {MAX_ANSWER_BYTES} bytes"
        ));
    }
    Ok(body)
}

/// An HTTP client for a back end or a webhook: no redirect is followed (a back end
/// that answers 3xx answers wrongly; following it could send a CSR, or accept a
/// certificate, over another scheme, host or port), with the given time limits.
pub fn http_client(
    connect: std::time::Duration,
    total: std::time::Duration,
) -> reqwest::blocking::ClientBuilder {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect)
        .timeout(total)
}

/// Whether `cert_der` is a certificate for this request: its public key and common
/// name are the CSR's (whatever else it says); the error says which is not.
pub(crate) fn is_for(req: &OrderRequest<'_>, cert_der: &[u8]) -> Result<(), String> {
    let cert = X509::from_der(cert_der).map_err(|e| format!("not a certificate: {e}"))?;
    let key = cert
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .map_err(|e| format!("unreadable public key: {e}"))?;
    let want = req
        .csr
        .public_key()
        .public_key_to_der()
        .map_err(|e| format!("unreadable CSR key: {e}"))?;
    if key != want {
        return Err("the returned certificate is for another key".into());
    }
    let info = CertInfo::from_der(cert_der).map_err(|e| e.to_string())?;
    if info.common_name.as_deref() != Some(req.csr.certname().as_str()) {
        return Err(format!(
            "the returned certificate names {:?}, not {}",
            info.common_name,
            req.csr.certname()
        ));
    }
    Ok(())
}

/// A remote back end's CA bundle (`ca_file`): what its certificates must chain to.
#[derive(Clone)]
pub struct Trust {
    store: Arc<openssl::x509::store::X509Store>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Trust")
    }
}

impl Trust {
    /// Reads the PEM bundle at `path`; an error when it holds no certificate.
    pub fn from_file(path: &std::path::Path) -> Result<Trust, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certs = X509::stack_from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", path.display()));
        }
        let mut b = openssl::x509::store::X509StoreBuilder::new().map_err(|e| e.to_string())?;
        for c in certs {
            b.add_cert(c).map_err(|e| e.to_string())?;
        }
        Ok(Trust {
            store: Arc::new(b.build()),
        })
    }
}

/// Slack for clocks that disagree with the back end's, in seconds.
const CLOCK_SKEW: i64 = 300;

/// Extensions a returned certificate may carry beside the Puppet arcs, whose values
/// must be the ones the CSR requested: basicConstraints, keyUsage, extKeyUsage, subject
/// and authority key identifiers, subjectAltName, CRL distribution points, authority
/// information access, certificate policies, Netscape comment (Puppet Server's).
const RETURNED_EXTENSIONS: [&str; 10] = [
    "2.5.29.19",
    "2.5.29.15",
    "2.5.29.37",
    "2.5.29.14",
    "2.5.29.35",
    "2.5.29.17",
    "2.5.29.31",
    "1.3.6.1.5.5.7.1.1",
    "2.5.29.32",
    "2.16.840.1.113730.1.13",
];

/// Checks a certificate a back end returned as certd's own policy would have made it,
/// whoever signed it: for this request (the CSR's name and key), chaining to the back
/// end's CA bundle, not a CA, valid now and for no longer than asked, with no key usage
/// beyond a leaf's (no certificate or CRL signing; TLS server and client only), no
/// subject alternative name the CSR policy did not allow, and no extension beyond the
/// allowlist and what the CSR requested. A back end that answers otherwise is an
/// error, never an issuance.
pub(crate) fn verify_returned(
    req: &OrderRequest<'_>,
    cert_der: &[u8],
    trust: &Trust,
) -> Result<(), String> {
    is_for(req, cert_der)?;
    let cert = X509::from_der(cert_der).map_err(|e| format!("not a certificate: {e}"))?;
    let info = CertInfo::from_der(cert_der).map_err(|e| e.to_string())?;
    let mut ctx = openssl::x509::X509StoreContext::new().map_err(|e| e.to_string())?;
    let chain = openssl::stack::Stack::new().map_err(|e| e.to_string())?;
    let verdict = ctx
        .init(&trust.store, &cert, &chain, |c| {
            Ok(c.verify_cert()?.then_some(()).ok_or_else(|| c.error()))
        })
        .map_err(|e| e.to_string())?;
    if let Err(e) = verdict {
        return Err(format!(
            "the returned certificate does not verify against the back end's CA bundle: {e}"
        ));
    }
    if info.is_ca {
        return Err("the returned certificate is a CA (basicConstraints CA:TRUE)".into());
    }
    if info.not_before > req.now + CLOCK_SKEW || info.not_after <= req.now {
        return Err("the returned certificate is not valid now".into());
    }
    if info.not_after - req.now > req.validity.saturating_add(CLOCK_SKEW) {
        return Err(format!(
            "the returned certificate is valid for {} s more, beyond the {} s asked for",
            info.not_after - req.now,
            req.validity
        ));
    }
    if info.subject_rdn_count != 1 {
        return Err("the returned certificate's subject is not the certname alone".into());
    }
    let asked = req.csr.subject();
    let certname = req.csr.certname().as_str();
    if let Some(d) = info
        .dns_names
        .iter()
        .find(|d| d.as_str() != certname && !asked.dns_names.contains(d))
    {
        return Err(format!(
            "the returned certificate names DNS:{d}, which the CSR policy did not allow"
        ));
    }
    if let Some(ip) = info.ip_addrs.iter().find(|ip| !asked.ip_addrs.contains(ip)) {
        return Err(format!(
            "the returned certificate names IP:{ip}, which the CSR policy did not allow"
        ));
    }
    for (oid, _, value) in &info.extensions {
        if oid.starts_with(&format!("{}.", crate::ca::PUPPET_ARC)) {
            let requested = asked.extensions.iter().any(|(o, v, _)| {
                o == oid
                    && crate::ca::der_text(v).is_some()
                    && crate::ca::der_text(v) == crate::ca::der_text(value)
            });
            if !requested || oid == crate::ca::PP_CLI_AUTH {
                return Err(format!(
                    "the returned certificate carries {oid}, which the CSR did not request"
                ));
            }
            continue;
        }
        if !RETURNED_EXTENSIONS.contains(&oid.as_str()) {
            return Err(format!(
                "the returned certificate carries extension {oid}, which certd does not allow"
            ));
        }
        if oid == "2.5.29.17" {
            // DNS and IP names were compared above; any other kind (URI, e-mail,
            // otherName, directoryName) is beyond what the CSR policy allows.
            use der::Decode;
            let san = x509_cert::ext::pkix::SubjectAltName::from_der(value)
                .map_err(|e| format!("unreadable subjectAltName: {e}"))?;
            if san.0.iter().any(|n| {
                !matches!(
                    n,
                    x509_cert::ext::pkix::name::GeneralName::DnsName(_)
                        | x509_cert::ext::pkix::name::GeneralName::IpAddress(_)
                )
            }) {
                return Err("the returned certificate has a subject alternative name that is neither DNS nor IP".into());
            }
        }
        if oid == "2.5.29.15" {
            use der::Decode;
            let ku = x509_cert::ext::pkix::KeyUsage::from_der(value)
                .map_err(|e| format!("unreadable keyUsage: {e}"))?;
            if ku.key_cert_sign() || ku.crl_sign() {
                return Err("the returned certificate may sign certificates or CRLs".into());
            }
        }
        if oid == "2.5.29.37" {
            use der::Decode;
            let eku = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(value)
                .map_err(|e| format!("unreadable extKeyUsage: {e}"))?;
            if let Some(other) = eku.0.iter().find(|u| {
                let u = u.to_string();
                u != "1.3.6.1.5.5.7.3.1" && u != "1.3.6.1.5.5.7.3.2"
            }) {
                return Err(format!("the returned certificate has extended key usage {other}, beyond TLS server and client"));
            }
        }
    }
    Ok(())
}

/// The first certificate of a PEM text, DER.
pub(crate) fn first_pem_cert(pem: &[u8]) -> Result<Vec<u8>, String> {
    X509::from_pem(pem)
        .and_then(|c| c.to_der())
        .map_err(|e| format!("no PEM certificate in the answer: {e}"))
}

/// Shortens a remote message for `sub_status_message` (bounded, one line).
pub(crate) fn short(text: &str) -> String {
    let one: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    one.trim().to_owned()
}
