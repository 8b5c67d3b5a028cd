//! Certificates: reading, signing a pending request, revoking, cleaning.

use super::{certname, App, AppError, EnvCa};
use crate::ca::{CaError, CertInfo, Certname, RevocationReason, ValidatedCsr};
use crate::issuer::{OrderRequest, Outcome, PluginMeta};
use crate::store::{
    CertRecord, CleanOutcome, IssueOutcome, RequestRecord, RequestState, Revocation, RevokeOutcome,
    RevokedSerial, SubStatus, SubmitIssueOutcome, SubmitOutcome, SubmitRule,
};

/// A valid certificate as served.
#[derive(Debug, Clone)]
pub struct CertificateView {
    /// The environment.
    pub env: crate::ca::EnvName,
    /// Whose.
    pub certname: Certname,
    /// The stored record.
    pub record: CertRecord,
}

impl CertificateView {
    /// PEM encoding.
    pub fn pem(&self) -> Vec<u8> {
        crate::ca::pem_encode("CERTIFICATE", &self.record.der)
    }
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The environment.
    pub env: String,
    /// Whose.
    pub certname: Certname,
}

/// What approving a request led to.
#[derive(Debug, Clone)]
pub enum Signing {
    /// The certificate is stored (201).
    Issued(Issued),
    /// An issuer that answers later has the order (202); `sub_status` says where it is.
    Accepted {
        /// The order's `sub_status` (none when the order ended meanwhile).
        sub_status: Option<SubStatus>,
    },
}

/// A signing that lost to a concurrent change is retried this many times (serial
/// collisions only; 128 random bits make even one retry vanishingly rare).
const SIGN_ATTEMPTS: usize = 3;

impl App {
    /// `GET /{env}/certificate/{name}`: the valid certificate; 410 when revoked; 404 when
    /// none (a pending request is not a certificate).
    pub fn certificate(&self, raw_env: &str, raw_name: &str) -> Result<CertificateView, AppError> {
        let env = self.env_ca(raw_env)?;
        let name = certname(raw_name)?;
        let found = self.store.certificate(&env.name, &name)?;
        certificate_view(&env, name, found)
    }

    /// [`App::certificate`] if the store can answer without waiting on the network;
    /// `None`: call [`App::certificate`] where blocking is allowed.
    pub fn certificate_now(
        &self,
        raw_env: &str,
        raw_name: &str,
    ) -> Option<Result<CertificateView, AppError>> {
        self.certificate_read_now(self.env_ca(raw_env), raw_name, certificate_view)
    }

    /// Reads the certificate of `raw_name` in `env` if the store can answer without
    /// waiting on the network, and makes `answer` of it; `None` when only a read that
    /// may block can tell.
    pub(super) fn certificate_read_now<T>(
        &self,
        env: Result<std::sync::Arc<EnvCa>, AppError>,
        raw_name: &str,
        answer: impl FnOnce(&EnvCa, Certname, Option<CertRecord>) -> Result<T, AppError>,
    ) -> Option<Result<T, AppError>> {
        let (env, name) = match env.and_then(|e| Ok((e, certname(raw_name)?))) {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        let found = self.store.certificate_now(&env.name, &name)?;
        Some(
            found
                .map_err(AppError::from)
                .and_then(|f| answer(&env, name, f)),
        )
    }

    /// The issuing CA certificate of an environment (the `ca` name), DER.
    pub fn ca_certificate_der(&self, raw_env: &str) -> Result<Vec<u8>, AppError> {
        let env = self.env_ca(raw_env)?;
        Ok(env.ca.cert().to_der().map_err(CaError::from)?)
    }

    /// Signs the pending request of `name` with the environment's CA and stores the
    /// certificate, durably. `ttl` overrides the environment's validity (seconds).
    pub fn sign(
        &self,
        who: &crate::authz::Identity,
        raw_env: &str,
        raw_name: &str,
        ttl: Option<i64>,
    ) -> Result<Signing, AppError> {
        let env = self.env_ca(raw_env)?;
        let name = certname(raw_name)?;
        self.sign_pending(who, &env, &name, ttl)
    }

    /// A certificate whose authority would reach beyond its environment is acted on as
    /// an admin (signed, its pending request replaced or rejected, revoked, cleaned) by
    /// a global admin only ([`App::authority_beyond`]): an environment's own admins
    /// (production's too) act on everything else there. Otherwise 403; `action` says
    /// what was refused.
    pub(super) fn may_act_on(
        &self,
        who: &crate::authz::Identity,
        env: &EnvCa,
        subject: &crate::ca::Subject,
        action: &str,
    ) -> Result<(), AppError> {
        if who.role == crate::authz::Role::Admin {
            return Ok(());
        }
        match self.authority_beyond(env, subject) {
            Some(whose) => Err(AppError::Forbidden(format!(
                "{} is {whose}; only a global administrator {action} it",
                subject.certname
            ))),
            None => Ok(()),
        }
    }

    /// [`App::may_act_on`] for what `name` has in `env` that `action` acts on: the name
    /// itself, and by what it holds (its extensions too) its certificate
    /// ([`Acted::Certificate`]: revoke, clean) or its pending request
    /// ([`Acted::Request`]: reject, delete). Each is judged by what it acts on alone, so
    /// that a request nobody approved cannot keep an admin from revoking. Read only for
    /// a caller who is not a global admin.
    pub(super) fn may_act_on_stored(
        &self,
        who: &crate::authz::Identity,
        env: &EnvCa,
        name: &Certname,
        acted: Acted,
        action: &str,
    ) -> Result<(), AppError> {
        if who.role == crate::authz::Role::Admin {
            return Ok(());
        }
        self.may_act_on(who, env, &crate::ca::Subject::new(name.clone()), action)?;
        match acted {
            Acted::Certificate => {
                if let Some(cert) = self.store.certificate(&env.name, name)? {
                    if let Ok((subject, _, _)) = crate::ca::Subject::from_certificate(&cert.der) {
                        self.may_act_on(who, env, &subject, action)?;
                    }
                }
            }
            Acted::Request => {
                let pending = self
                    .store
                    .request(&env.name, name)?
                    .filter(|r| r.state == RequestState::Requested);
                if let Some(subject) = pending.and_then(|r| self.csr_subject(env, name, &r.csr_der))
                {
                    self.may_act_on(who, env, &subject, action)?;
                }
            }
        }
        Ok(())
    }

    /// The subject a stored CSR of `name` asks for, if it still passes `env`'s policy.
    pub(super) fn csr_subject(
        &self,
        env: &EnvCa,
        name: &Certname,
        der: &[u8],
    ) -> Option<crate::ca::Subject> {
        let policy = env.settings.csr_policy(&self.config.limits);
        ValidatedCsr::parse(der, name, &policy)
            .ok()
            .map(|csr| csr.subject())
    }

    /// What makes a certificate for `subject` in `env` hold authority beyond that
    /// environment, if anything: a global admin's name where `env`'s CA may vouch for
    /// one, certd's own name in production (where setup records its certificates), or a
    /// name or extension value an authorization rule admits from any environment
    /// (`certname:`, `extension:`).
    fn authority_beyond(&self, env: &EnvCa, subject: &crate::ca::Subject) -> Option<&'static str> {
        let name = &subject.certname;
        if self.config.is_global_admin_name(name) && self.config.vouches_for_admins(&env.name) {
            return Some("a global administrator's name");
        }
        if self.own_names.contains(name) && env.name == crate::ca::EnvName::production() {
            return Some("certd's own name");
        }
        let reach = self.rules_reach(env, subject);
        (reach == Some(crate::authz::Reach::Everywhere))
            .then_some("named by an authorization rule that admits it from any environment")
    }

    fn rules_reach(
        &self,
        env: &EnvCa,
        subject: &crate::ca::Subject,
    ) -> Option<crate::authz::Reach> {
        let extensions: Vec<(String, String)> = subject
            .extensions
            .iter()
            .filter_map(|(oid, value, _)| Some((oid.clone(), crate::ca::der_text(value)?)))
            .collect();
        self.config
            .rules
            .singles_out(env.name.as_str(), subject.certname.as_str(), &extensions)
    }

    /// Whether a certificate for `subject` would hold authority in `env`: a global
    /// admin's name, one of `env`'s own admins, certd's own, or a name or extension
    /// value an authorization rule singles out. No policy signs it and no sweep
    /// (Puppet's sign-all) takes it, or anyone who asked for it first would hold that
    /// authority once a policy or a sweep signed.
    pub(super) fn holds_authority(&self, env: &EnvCa, subject: &crate::ca::Subject) -> bool {
        let name = &subject.certname;
        self.config.is_global_admin_name(name)
            || env.settings.admins.contains(name)
            || self.own_names.contains(name)
            || self.rules_reach(env, subject).is_some()
    }

    /// Approves the pending request of `name` (the caller is authorised, or it is
    /// autosign): the built-in CA signs it now; an issuer that answers later gets an
    /// order (see `orders.rs`).
    pub(super) fn sign_pending(
        &self,
        who: &crate::authz::Identity,
        env: &EnvCa,
        name: &Certname,
        ttl: Option<i64>,
    ) -> Result<Signing, AppError> {
        self.approve(env, name, ttl, None, Some(who))
    }

    /// As [`App::sign_pending`]; `validated` is the CSR the caller decided on (autosign
    /// right after submission, or a sweep): only that CSR is signed (409
    /// `request-changed` when another replaced it meanwhile). `by` is the admin
    /// approving (`None`: a policy), who must be one who may sign the CSR approved
    /// ([`App::may_act_on`]), decided on the very record that is signed: the store's
    /// write compares it whole. Answers `Ok` only once everything written before and
    /// during it is durable (autosign relies on this for the request).
    pub(super) fn approve(
        &self,
        env: &EnvCa,
        name: &Certname,
        ttl: Option<i64>,
        validated: Option<ValidatedCsr>,
        by: Option<&crate::authz::Identity>,
    ) -> Result<Signing, AppError> {
        let _slot = self.signing_slot()?;
        let name = name.clone();
        if let Some(t) = ttl {
            if t <= 0 {
                return Err(AppError::BadRequest {
                    code: "invalid-ttl",
                    detail: format!("ttl {t} must be a positive number of seconds"),
                });
            }
        }
        let req = match self.store.request(&env.name, &name)? {
            Some(
                r @ RequestRecord {
                    state: RequestState::Requested,
                    ..
                },
            ) => r,
            Some(RequestRecord {
                state: RequestState::Invalid { reason, .. } | RequestState::Error { reason },
                ..
            }) => {
                return Err(AppError::Conflict {
                    code: "request-invalid",
                    detail: format!("the request of {name} cannot be signed: {reason}"),
                });
            }
            None => return Err(self.no_request(env, &name)?),
        };
        let csr = match validated {
            Some(csr) if csr.der() == req.csr_der.as_slice() => csr,
            // A policy, or a sweep, decided on that CSR: one that replaced it since is
            // not what was decided on, and stays pending.
            Some(_) => {
                return Err(AppError::Conflict {
                    code: "request-changed",
                    detail: format!("the request of {name} was replaced while it was being approved; it stays pending"),
                })
            }
            None => ValidatedCsr::parse(
                &req.csr_der,
                &name,
                &env.settings.csr_policy(&self.config.limits),
            )
            .map_err(AppError::CsrRejected)?,
        };
        if let Some(who) = by {
            self.may_act_on(who, env, &csr.subject(), "signs")?;
        }
        let validity = self.validity(env, ttl);
        if let Some(order) = &req.order {
            // Approved before; the order is under way.
            return Ok(Signing::Accepted {
                sub_status: Some(order.sub_status),
            });
        }
        let issuer = self.issuer_for(env, &csr, validity)?;
        if !issuer.backend.in_process() {
            return self.start_order(env, &name, req, issuer, validity);
        }
        let order = OrderRequest {
            env: &env.name,
            csr: &csr,
            validity,
            now: self.now(),
        };
        for _ in 0..SIGN_ATTEMPTS {
            let record = self.sign_here(issuer, &order)?;
            let outcome = self.store.issue(&env.name, &name, &req, &record)?;
            if outcome != IssueOutcome::Issued {
                self.metrics.discarded(env.name.as_str());
            }
            match outcome {
                IssueOutcome::Issued => {
                    self.store.flush()?;
                    return self.issued(env, name, &record, &issuer.name);
                }
                IssueOutcome::SerialTaken => continue,
                IssueOutcome::AlreadySigned => return Err(already_signed(&name)),
                IssueOutcome::RequestChanged => {
                    return Err(AppError::Conflict { code: "request-changed", detail: format!("the request of {name} was replaced while it was being signed; sign again") });
                }
                IssueOutcome::NoRequest => return Err(self.no_request(env, &name)?),
            }
        }
        Err(serials_exhausted())
    }

    /// Autosign at submission with an issuer that signs in process: signs first, then
    /// stores the request and its certificate in one store transaction (one sled
    /// transaction costs two log-buffer writes on sled's I/O threads, a large part of an
    /// issuance). Answers `Ok(None)` when the issuer is not in process (the caller stores
    /// the request and starts the order as usual). When signing fails, the request is
    /// stored alone and made durable, then the error answered, as when approving a stored
    /// request fails.
    pub(super) fn submit_signed(
        &self,
        env: &EnvCa,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
        csr: &ValidatedCsr,
        adds: bool,
    ) -> Result<Option<SubmitOutcome>, AppError> {
        let validity = self.validity(env, None);
        let issuer = match self.issuer_for(env, csr, validity) {
            Ok(i) if !i.backend.in_process() => return Ok(None),
            Ok(i) => i,
            Err(e) => return self.store_unsigned(env, name, rec, rule, adds, e),
        };
        // A submission made unread (`App::submit_as`) does not wait for a slot: it may
        // be for a name that is not new, which the read refuses without signing.
        let slot = if rule.new_only {
            match self.try_signing_slot() {
                Some(slot) => Ok(slot),
                None => return Ok(Some(SubmitOutcome::NotNew)),
            }
        } else {
            self.signing_slot()
        };
        let _slot = match slot {
            Ok(slot) => slot,
            Err(e) => return self.store_unsigned(env, name, rec, rule, adds, e),
        };
        let order = OrderRequest {
            env: &env.name,
            csr,
            validity,
            now: self.now(),
        };
        for _ in 0..SIGN_ATTEMPTS {
            let record = match self.sign_here(issuer, &order) {
                Ok(r) => r,
                Err(e) => return self.store_unsigned(env, name, rec, rule, adds, e),
            };
            match self
                .store
                .submit_issued(&env.name, name, rec, rule, &record)?
            {
                SubmitIssueOutcome::SerialTaken => {
                    self.metrics.discarded(env.name.as_str());
                    continue;
                }
                SubmitIssueOutcome::Refused(refused) => {
                    self.metrics.discarded(env.name.as_str());
                    return Ok(Some(refused));
                }
                SubmitIssueOutcome::Stored(submitted, issued) => {
                    // Durable already: submit_issued flushed it.
                    return self
                        .stored_and_issued(env, name, &record, &issuer.name, submitted, issued)
                        .map(Some);
                }
            }
        }
        self.store_unsigned(env, name, rec, rule, adds, serials_exhausted())
    }

    /// What an autosigned submission answers once the store has stored (durably) its
    /// request and then `issued`: the submission's outcome when the certificate went in.
    pub(super) fn stored_and_issued(
        &self,
        env: &EnvCa,
        name: &Certname,
        record: &CertRecord,
        issuer: &str,
        submitted: SubmitOutcome,
        issued: IssueOutcome,
    ) -> Result<SubmitOutcome, AppError> {
        match issued {
            IssueOutcome::Issued => {
                self.issued(env, name.clone(), record, issuer)?;
                Ok(submitted)
            }
            IssueOutcome::AlreadySigned => {
                self.metrics.discarded(env.name.as_str());
                Err(already_signed(name))
            }
            other => {
                self.metrics.discarded(env.name.as_str());
                Err(AppError::Pki(CaError::BadCertificate(format!(
                    "the request just stored could not be issued: {other:?}"
                ))))
            }
        }
    }

    /// [`App::submit_signed`]'s signature for [`App::submit_start`], where nothing may
    /// block: `None` unless the issuer signs in process, a signing slot is free at once,
    /// and the signature succeeds (the caller then submits on a thread that may block,
    /// which waits for a slot, and stores the request alone if signing fails). The slot
    /// is held until the certificate is committed.
    pub(super) fn sign_submission(
        &self,
        env: &EnvCa,
        csr: &ValidatedCsr,
    ) -> Option<(super::SigningSlot, CertRecord, String)> {
        let validity = self.validity(env, None);
        let issuer = self
            .issuer_for(env, csr, validity)
            .ok()
            .filter(|i| i.backend.in_process())?;
        let slot = self.try_signing_slot()?;
        let order = OrderRequest {
            env: &env.name,
            csr,
            validity,
            now: self.now(),
        };
        let record = self.sign_here(issuer, &order).ok()?;
        Some((slot, record, issuer.name.clone()))
    }

    /// [`App::submit_signed`] when signing failed with `e`: the request alone, durably;
    /// then `e`, or the refusal that the submission would have met anyway. One that
    /// `adds` a request needs room for it ([`App::room_for`]).
    fn store_unsigned(
        &self,
        env: &EnvCa,
        name: &Certname,
        rec: &RequestRecord,
        rule: SubmitRule,
        adds: bool,
        e: AppError,
    ) -> Result<Option<SubmitOutcome>, AppError> {
        if adds && !self.room_for(&env.name, rule)? {
            return Ok(Some(SubmitOutcome::NotNew));
        }
        let outcome = self.store.submit_request(&env.name, name, rec, rule)?;
        self.store.flush()?;
        match outcome {
            SubmitOutcome::Created | SubmitOutcome::Replaced => Err(e),
            refused => Ok(Some(refused)),
        }
    }

    /// Seconds a new certificate is valid: the signer's `ttl`, else the environment's
    /// `cert_ttl`, else the CA's.
    fn validity(&self, env: &EnvCa, ttl: Option<i64>) -> i64 {
        ttl.or(env.settings.cert_ttl.map(|d| d.as_secs()))
            .unwrap_or(self.config.ca.cert_ttl.as_secs())
    }

    /// Signs `order` with an issuer that answers at once (the built-in CA); the record
    /// to store.
    fn sign_here(
        &self,
        issuer: &crate::issuer::Configured,
        order: &OrderRequest<'_>,
    ) -> Result<CertRecord, AppError> {
        match issuer.backend.issue(order, &mut PluginMeta::new()) {
            Outcome::Issued { cert_der } => cert_record(&cert_der, self.now()),
            other => Err(AppError::Pki(CaError::BadCertificate(format!(
                "the built-in CA did not sign: {other:?}"
            )))),
        }
    }

    /// Logs and counts a certificate just stored and made durable.
    fn issued(
        &self,
        env: &EnvCa,
        name: Certname,
        record: &CertRecord,
        issuer: &str,
    ) -> Result<Signing, AppError> {
        let serial = crate::ca::SerialNumber::from_bytes(&record.serial)?;
        tracing::info!(env = %env.name, certname = %name, serial = %serial, "issued");
        self.metrics.issued(env.name.as_str(), issuer);
        Ok(Signing::Issued(Issued {
            env: env.name.to_string(),
            certname: name,
        }))
    }

    /// Why there is nothing to sign: a concurrent signer won (409), or there never was a
    /// request (404).
    fn no_request(&self, env: &EnvCa, name: &Certname) -> Result<AppError, AppError> {
        Ok(match self.store.certificate(&env.name, name)? {
            Some(c) if c.revocation.is_none() => already_signed(name),
            _ => AppError::NotFound(format!("no certificate request for {name}")),
        })
    }

    /// `DELETE /{env}/certificate/{name}`: revokes (idempotent), rebuilds the CRL, and
    /// makes both durable before answering.
    pub fn revoke(
        &self,
        who: &crate::authz::Identity,
        raw_env: &str,
        raw_name: &str,
        reason: Option<&str>,
    ) -> Result<(), AppError> {
        let env = self.env_ca(raw_env)?;
        let name = certname(raw_name)?;
        self.may_act_on_stored(who, &env, &name, Acted::Certificate, "revokes")?;
        let reason = parse_reason(reason)?;
        let revocation = Revocation {
            revoked_at: self.now(),
            reason,
        };
        let outcome = self.store.revoke(&env.name, &name, revocation)?;
        match outcome {
            RevokeOutcome::NotFound => {
                Err(AppError::NotFound(format!("no certificate for {name}")))
            }
            RevokeOutcome::AlreadyRevoked => Ok(()),
            RevokeOutcome::Revoked { serial } => {
                self.rebuild_crl(&env, Some(&[RevokedSerial { serial, revocation }]))?;
                self.store.flush()?;
                tracing::info!(env = %env.name, certname = %name, reason = reason.name(), "revoked");
                Ok(())
            }
        }
    }

    /// `DELETE /{env}/certificate_status/{name}`: revokes a valid certificate, then
    /// forgets the certificate and any request. The serial stays on the CRL.
    pub fn clean(
        &self,
        who: &crate::authz::Identity,
        raw_env: &str,
        raw_name: &str,
    ) -> Result<(), AppError> {
        let env = self.env_ca(raw_env)?;
        let name = certname(raw_name)?;
        self.may_act_on_stored(who, &env, &name, Acted::Certificate, "cleans")?;
        let revocation = Revocation {
            revoked_at: self.now(),
            reason: RevocationReason::CessationOfOperation,
        };
        if let Some(rec) = self.store.request(&env.name, &name)? {
            self.cancel_order(&env, &name, &rec);
        }
        match self.store.clean(&env.name, &name, revocation)? {
            CleanOutcome::NotFound => Err(AppError::NotFound(format!(
                "no certificate or request for {name}"
            ))),
            CleanOutcome::Cleaned { revoked } => {
                if let Some(serial) = revoked {
                    self.rebuild_crl(&env, Some(&[RevokedSerial { serial, revocation }]))?;
                }
                self.store.flush()?;
                Ok(())
            }
        }
    }
}

/// What an admin's action on a name acts on ([`App::may_act_on_stored`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Acted {
    /// Its certificate (revoke, clean).
    Certificate,
    /// Its pending request (reject, delete).
    Request,
}

fn serials_exhausted() -> AppError {
    AppError::Pki(CaError::BadCertificate(
        "could not draw an unused serial number".into(),
    ))
}

fn already_signed(name: &Certname) -> AppError {
    AppError::Conflict {
        code: "already-signed",
        detail: format!("{name} already has a signed certificate"),
    }
}

/// `?reason=` as an RFC 5280 name; `unspecified` when absent.
fn parse_reason(raw: Option<&str>) -> Result<RevocationReason, AppError> {
    match raw {
        None => Ok(RevocationReason::Unspecified),
        Some(r) => RevocationReason::parse(r).ok_or_else(|| AppError::BadRequest {
            code: "invalid-reason",
            detail: format!("{:?} is not an RFC 5280 reason; use unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, removeFromCRL, privilegeWithdrawn or aACompromise", r.chars().take(40).collect::<String>()),
        }),
    }
}

/// The stored record of a freshly signed certificate, with the summary fields listings
/// use instead of re-parsing.
pub(super) fn cert_record(der: &[u8], now: i64) -> Result<CertRecord, AppError> {
    let info = CertInfo::from_der(der)?;
    Ok(CertRecord {
        serial: info.serial.as_bytes().to_vec(),
        der: der.to_vec(),
        issued_at: now,
        not_before: info.not_before,
        not_after: info.not_after,
        dns_names: info.dns_names,
        ip_addrs: info.ip_addrs.iter().map(|ip| ip.to_string()).collect(),
        authorization_extensions: info
            .extensions
            .iter()
            .filter(|(oid, _, _)| oid.starts_with(&format!("{}.3.", crate::ca::PUPPET_ARC)))
            .map(|(oid, _, value)| (oid.clone(), crate::ca::der_text(value).unwrap_or_default()))
            .collect(),
        revocation: None,
        fingerprints: Some(crate::store::StoredFingerprints::of_der(der)),
    })
}

/// What `GET certificate/{name}` answers for what the store holds.
fn certificate_view(
    env: &EnvCa,
    name: Certname,
    found: Option<CertRecord>,
) -> Result<CertificateView, AppError> {
    match found {
        None => Err(AppError::NotFound(format!("no certificate for {name}"))),
        Some(CertRecord {
            revocation: Some(r),
            ..
        }) => Err(AppError::Revoked {
            certname: name,
            revoked_at: r.revoked_at,
            reason: r.reason.name(),
        }),
        Some(record) => Ok(CertificateView {
            env: env.name.clone(),
            certname: name,
            record,
        }),
    }
}
