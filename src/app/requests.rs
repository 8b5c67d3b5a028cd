//! Certificate requests: submission, reading, rejection.

use super::{certname, App, AppError};
use crate::authz::Identity;
use crate::ca::{Certname, ValidatedCsr};
use crate::store::{RequestRecord, RequestState, SubmitOutcome, SubmitRule};

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new request (201).
    Created,
    /// A pending request was replaced (200), a modify in seed 000's terms.
    Replaced,
}

/// A pending request as served.
#[derive(Debug, Clone)]
pub struct RequestView {
    /// Whose.
    pub certname: Certname,
    /// The CSR, DER.
    pub csr_der: Vec<u8>,
}

impl RequestView {
    /// The CSR as PEM.
    pub fn pem(&self) -> Vec<u8> {
        crate::ca::pem_encode("CERTIFICATE REQUEST", &self.csr_der)
    }
}

/// What a submission's store outcome answers: 201/200, or the 409 of a refusal.
fn submitted(name: &Certname, outcome: SubmitOutcome) -> Result<Submitted, AppError> {
    match outcome {
        SubmitOutcome::Created => Ok(Submitted::Created),
        SubmitOutcome::Replaced => Ok(Submitted::Replaced),
        SubmitOutcome::RequestPending => Err(AppError::Conflict {
            code: "already-requested",
            detail: format!(
                "{name} already has a requested certificate; ignoring certificate request"
            ),
        }),
        SubmitOutcome::CertificateExists { revoked } => Err(AppError::Conflict {
            code: if revoked {
                "already-revoked"
            } else {
                "already-signed"
            },
            detail: format!(
                "{name} already has a {} certificate; ignoring certificate request",
                if revoked { "revoked" } else { "signed" }
            ),
        }),
    }
}

impl App {
    /// `PUT /{env}/certificate_request/{name}`: validates the CSR under the environment's
    /// policy and stores it as pending, durably.
    pub fn submit(
        &self,
        raw_env: &str,
        raw_name: &str,
        body: &[u8],
    ) -> Result<Submitted, AppError> {
        self.submit_as(raw_env, raw_name, body, false)
    }

    /// Submission with either face's duplicate rule: the native face replaces a pending
    /// request (200); Puppet's (`refuse_pending`) refuses it like a signed one. After a
    /// stored submission the environment's autosign policy may sign it at once.
    pub(super) fn submit_as(
        &self,
        raw_env: &str,
        raw_name: &str,
        body: &[u8],
        refuse_pending: bool,
    ) -> Result<Submitted, AppError> {
        let env = self.env_ca(raw_env)?;
        let name = certname(raw_name)?;
        let csr = ValidatedCsr::parse(body, &name, &env.settings.csr_policy(&self.config.limits))?;
        let subject = csr.subject();
        // A CSR replacing one whose order is under way keeps the order: the worker hands
        // the new CSR to the issuer's `modify` (seed 000).
        let prev = self.store.request(&env.name, &name)?;
        let pending = matches!(
            prev,
            Some(RequestRecord {
                state: RequestState::Requested,
                ..
            })
        );
        let order = match prev {
            Some(RequestRecord {
                state: RequestState::Requested,
                order: Some(mut o),
                ..
            }) if !refuse_pending => {
                o.modified = true;
                o.due_ms = super::orders::now_ms();
                o.lease_until_ms = 0;
                Some(o)
            }
            _ => None,
        };
        let modifies = order.is_some();
        let rec = RequestRecord {
            csr_der: csr.der().to_vec(),
            submitted_at: self.now(),
            state: RequestState::Requested,
            dns_names: subject.dns_names.clone(),
            ip_addrs: subject.ip_addrs.iter().map(|ip| ip.to_string()).collect(),
            order,
        };
        let rule = SubmitRule {
            allow_if_signed: env.settings.allow_duplicate_certs,
            replace_pending: !refuse_pending || env.settings.allow_duplicate_certs,
        };
        // The autosign policy is asked only about a submission that will be stored (the
        // store's transaction decides; these reads spare a policy run and a signature
        // for one that a reader can already see refused).
        let refused = (pending && !rule.replace_pending)
            || (!rule.allow_if_signed && self.store.certificate(&env.name, &name)?.is_some());
        let autosign = !modifies && !refused && {
            let timeout =
                std::time::Duration::from_secs(env.settings.autosign_timeout.as_secs() as u64);
            super::autosign::decide(&env.settings.autosign, timeout, &name, &csr.to_pem())
        };
        if autosign {
            // Signed in process: the request and its certificate in one transaction.
            if let Some(outcome) = self.submit_signed(&env, &name, &rec, rule, &csr)? {
                return submitted(&name, outcome);
            }
        }
        let outcome = self.store.submit_request(&env.name, &name, &rec, rule)?;
        let done = submitted(&name, outcome)?;
        if modifies {
            self.store.flush()?;
            self.wake_orders();
            return Ok(Submitted::Replaced);
        }
        if autosign {
            // An issuer that answers later: the approval starts its order. It answers
            // only once what it did is durable, and that one flush covers the request
            // too. When it fails, the request stays and is made durable here.
            if let Err(e) = self.approve(&env, &name, None, Some(csr)) {
                self.store.flush()?;
                return Err(e);
            }
        } else {
            self.store.flush()?;
        }
        Ok(done)
    }

    /// `GET /{env}/certificate_request/{name}`: the pending request; 410 when it was
    /// rejected or found invalid; 404 when there is none.
    pub fn request(&self, raw_env: &str, raw_name: &str) -> Result<RequestView, AppError> {
        let env = self.env_ca(raw_env)?;
        let name = certname(raw_name)?;
        match self.store.request(&env.name, &name)? {
            None => Err(AppError::NotFound(format!(
                "no certificate request for {name}"
            ))),
            Some(RequestRecord {
                state: RequestState::Invalid { reason } | RequestState::Error { reason },
                ..
            }) => Err(AppError::RequestInvalid {
                certname: name,
                reason,
            }),
            Some(rec) => Ok(RequestView {
                certname: name,
                csr_der: rec.csr_der,
            }),
        }
    }

    /// `DELETE /{env}/certificate_request/{name}`: rejects a pending request (it then
    /// answers 410); deleting an already rejected request removes it.
    pub fn reject(&self, who: &Identity, raw_env: &str, raw_name: &str) -> Result<(), AppError> {
        let env = self.env_ca(raw_env)?;
        let name = certname(raw_name)?;
        let now = self.now();
        let done = match self.store.request(&env.name, &name)? {
            None => false,
            Some(
                rec @ RequestRecord {
                    state: RequestState::Requested,
                    ..
                },
            ) => {
                self.cancel_order(&env, &name, &rec);
                let by = who
                    .certname
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "an admin".into());
                self.store
                    .reject_request(&env.name, &name, &format!("rejected by {by}"), now)?
            }
            Some(_) => self.store.cancel_request(&env.name, &name, now)?,
        };
        if !done {
            return Err(AppError::NotFound(format!(
                "no certificate request for {name}"
            )));
        }
        self.store.flush()?;
        Ok(())
    }
}
