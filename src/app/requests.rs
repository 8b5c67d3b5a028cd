//! Certificate requests: submission, reading, rejection.

use super::certificates::Acted;
use super::{certname, App, AppError, EnvCa};
use crate::authz::Identity;
use crate::ca::{Certname, ValidatedCsr};
use crate::store::{CertState, RequestRecord, RequestState, SubmitOutcome, SubmitRule};

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new request (201).
    Created,
    /// A pending request was replaced (200), an issuer's `modify`.
    Replaced,
}

/// What [`App::prepare`] found.
pub(super) struct Prepared {
    pub(super) csr: ValidatedCsr,
    pub(super) rec: RequestRecord,
    pub(super) rule: SubmitRule,
    pub(super) modifies: bool,
    /// The CSR is the one pending under an order already: nothing to store or modify.
    pub(super) unchanged: bool,
    pub(super) refused: bool,
    /// The name has no request (as far as read; unread, assumed new) and the store will
    /// not refuse it for a certificate: storing it adds a request.
    pub(super) adds: bool,
}

/// An environment's count of requests as last read from the store, and since counted
/// up (`limits.max_requests`).
pub(super) struct RequestCount {
    held: usize,
    /// When it was last read from the store; never yet: None.
    read_at: Option<std::time::Instant>,
    /// A caller is reading it again; the others go on with `held`.
    reading: bool,
}

/// A read of an environment's count under way; marked over when dropped, however the
/// read ended (an error, a panic).
struct Reading<'a> {
    app: &'a App,
    env: &'a crate::ca::EnvName,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.app.request_counts().get_mut(self.env) {
            c.reading = false;
        }
    }
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
pub(super) fn submitted(name: &Certname, outcome: SubmitOutcome) -> Result<Submitted, AppError> {
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
                CertState::of_certificate(revoked)
            ),
        }),
        // Asked for by a submission that read nothing, which is made again after the
        // read (`App::submit_as`, or `Finished::Again` after `App::submit_start`); not
        // answered otherwise.
        SubmitOutcome::NotNew => Err(AppError::Conflict {
            code: "already-requested",
            detail: format!("{name} already has a request or a certificate"),
        }),
    }
}

impl App {
    /// `PUT /{env}/certificate_request/{name}`: validates the CSR under the environment's
    /// policy and stores it as pending, durably.
    pub fn submit(
        &self,
        who: &Identity,
        raw_env: &str,
        raw_name: &str,
        body: &[u8],
    ) -> Result<Submitted, AppError> {
        self.submit_as(who, raw_env, raw_name, body, false, false)
    }

    /// [`App::submit`] after [`App::submit_start`] began it and it must be made again
    /// ([`Finished::Again`](super::Finished::Again)), or needed a thread (`read_first`
    /// false).
    pub fn submit_again(
        &self,
        who: &Identity,
        raw_env: &str,
        raw_name: &str,
        body: &[u8],
        read_first: bool,
    ) -> Result<Submitted, AppError> {
        self.submit_as(who, raw_env, raw_name, body, false, read_first)
    }

    /// Submission with either face's duplicate rule: the native face replaces a pending
    /// request (200); Puppet's (`refuse_pending`) refuses it like a signed one. After a
    /// stored submission the environment's autosign policy may sign it at once.
    ///
    /// With a store whose reads cost a round trip, a name the policy signs by its name
    /// alone is first submitted without reading what the name has, as a new name (an
    /// agent's first request): the store refuses it, writing nothing, if the name has a
    /// request or a certificate, and it is submitted again after the read (as it is when
    /// every signing slot is taken: the read path waits for one, for a new name only).
    /// Not for a name whose certificate this node holds in its cache. (Measured on
    /// PostgreSQL, ECDSA CA, 8 keep-alive agents, medians of 3 runs: 2,245–2,358/s with
    /// the read, 2,473–2,794/s without.) A name that is not new costs a signature more;
    /// nothing else of it is kept or served. `read_first`: reads first anyway, for a
    /// submission [`App::submit_start`] already made unread.
    pub(super) fn submit_as(
        &self,
        who: &Identity,
        raw_env: &str,
        raw_name: &str,
        body: &[u8],
        refuse_pending: bool,
        read_first: bool,
    ) -> Result<Submitted, AppError> {
        let env = self.env_ca(raw_env)?;
        let name = certname(raw_name)?;
        let unread = !read_first
            && !self.store.local_reads()
            && self.signs_by_name(&env, &name)
            && !matches!(
                self.store.certificate_now(&env.name, &name),
                Some(Ok(Some(_)))
            );
        if unread {
            if let Some(done) = self.submit_read(who, &env, &name, body, refuse_pending, false)? {
                return Ok(done);
            }
        }
        match self.submit_read(who, &env, &name, body, refuse_pending, true)? {
            Some(done) => Ok(done),
            None => submitted(&name, SubmitOutcome::NotNew),
        }
    }

    /// Whether the environment's autosign policy signs `name` on its name alone (`true`
    /// or globs, decided without a timeout; never a global admin's name).
    pub(super) fn signs_by_name(&self, env: &EnvCa, name: &Certname) -> bool {
        matches!(
            env.settings.autosign,
            crate::config::Autosign::All(true) | crate::config::Autosign::Globs(_)
        ) && !self.holds_authority(env, &crate::ca::Subject::new(name.clone()))
            && super::autosign::decide(
                &env.settings.autosign,
                std::time::Duration::ZERO,
                name,
                &[],
                &self.allowlists,
            )
    }

    /// [`App::submit_as`] after reading what the name has (`read`), or as a new name:
    /// `None` when the store found it was not.
    fn submit_read(
        &self,
        who: &Identity,
        env: &EnvCa,
        name: &Certname,
        body: &[u8],
        refuse_pending: bool,
        read: bool,
    ) -> Result<Option<Submitted>, AppError> {
        let Prepared {
            csr,
            rec,
            rule,
            modifies,
            unchanged,
            refused,
            adds,
        } = match self.prepare(who, env, name, body, refuse_pending, read) {
            Ok(p) => p,
            Err(AppError::InvalidInput(e)) if e.is_policy_refusal() => {
                self.keep_refused(env, name, body, &e)?;
                return Err(AppError::InvalidInput(e));
            }
            Err(e) => return Err(e),
        };
        if unchanged {
            return Ok(Some(Submitted::Replaced));
        }
        // A name that holds authority is signed by an admin, never by a policy.
        let autosign = !modifies && !refused && !self.holds_authority(env, &csr.subject()) && {
            let timeout =
                std::time::Duration::from_secs(env.settings.autosign_timeout.as_secs() as u64);
            // A program or file policy runs within the bound on policy runs (503 beyond).
            let _run = match env.settings.autosign {
                crate::config::Autosign::Path(_) => Some(self.policy_slot()?),
                _ => None,
            };
            super::autosign::decide(
                &env.settings.autosign,
                timeout,
                name,
                &csr.to_pem(),
                &self.allowlists,
            )
        };
        if autosign {
            // Signed in process: the request and its certificate in one transaction.
            match self.submit_signed(env, name, &rec, rule, &csr, adds)? {
                Some(SubmitOutcome::NotNew) => return Ok(None),
                Some(outcome) => return submitted(name, outcome).map(Some),
                None => {}
            }
        }
        if adds && !self.room_for(&env.name, rule)? {
            return Ok(None);
        }
        let outcome = self.store.submit_request(&env.name, name, &rec, rule)?;
        if outcome == SubmitOutcome::NotNew {
            return Ok(None);
        }
        let done = submitted(name, outcome)?;
        if modifies {
            self.store.flush()?;
            self.wake_orders();
            return Ok(Some(Submitted::Replaced));
        }
        if autosign {
            // An issuer that answers later: the approval starts its order. It answers
            // only once what it did is durable, and that one flush covers the request
            // too. When it fails, the request stays and is made durable here.
            if let Err(e) = self.approve(env, name, None, Some(csr), None) {
                self.store.flush()?;
                return Err(e);
            }
        } else {
            self.store.flush()?;
        }
        Ok(Some(done))
    }

    /// The checks and reads every submission starts with: the CSR validated under the
    /// environment's policy, the request record to store, the duplicate rule, whether it
    /// modifies an order under way, and whether a reader can already see it refused.
    /// Without `read`, as for a name with neither a request nor a certificate, and the
    /// rule is for a new name only.
    pub(super) fn prepare(
        &self,
        who: &Identity,
        env: &EnvCa,
        name: &Certname,
        body: &[u8],
        refuse_pending: bool,
        read: bool,
    ) -> Result<Prepared, AppError> {
        self.check_reserved(env, name)?;
        let csr = ValidatedCsr::parse(body, name, &env.settings.csr_policy(&self.config.limits))?;
        let subject = csr.subject();
        self.check_server_names(&subject)?;
        // A CSR replacing one whose order is under way keeps the order: the worker hands
        // the new CSR to the issuer's `modify`.
        let (prev, has_certificate) = if read {
            self.store.request_and_has_certificate(&env.name, name)?
        } else {
            (None, false)
        };
        let unrequested = prev.is_none();
        let pending = matches!(
            prev,
            Some(RequestRecord {
                state: RequestState::Requested,
                ..
            })
        );
        // Replacing a pending request: only with the same key, by an admin here, or by
        // the node itself; anyone else would have the admin's later sign certify their
        // key under another node's name.
        let replace_pending = pending
            && (!refuse_pending || env.settings.allow_duplicate_certs)
            && match &prev {
                Some(p) => self.may_replace(who, env, name, &p.csr_der, &csr)?,
                None => false,
            };
        if pending && !refuse_pending && !replace_pending {
            return Err(AppError::Conflict {
                code: "already-requested",
                detail: format!(
                    "{name} has a pending request for another key; only that key, an admin or the node itself may replace it"
                ),
            });
        }
        let same_csr = prev.as_ref().is_some_and(|p| p.csr_der == csr.der());
        let order = match prev {
            Some(RequestRecord {
                state: RequestState::Requested,
                order: Some(mut o),
                csr_der: approved,
                ..
            }) if !refuse_pending => {
                // The order carries out an approval of the CSR it was started for: a
                // replacement that would hold authority that one did not was approved
                // by nobody, and a policy or an environment's admin may not approve it
                // (409; an admin withdraws the request, or a global admin replaces it).
                if who.role != crate::authz::Role::Admin
                    && !same_csr
                    && self.holds_authority(env, &subject)
                    && !self.no_more_authority(env, name, &approved, &subject)
                {
                    return Err(AppError::Conflict {
                        code: "order-under-way",
                        detail: format!("{name}'s order is under way; a CSR that would hold authority does not join it"),
                    });
                }
                // Due now, but still in the hands of the worker that may be calling
                // its issuer: a lease ends only when it runs out or that worker gives
                // it back (`App::hand_back`), so one worker at a time calls the issuer.
                o.modified = true;
                o.due_ms = self.order_now_ms();
                Some(o)
            }
            _ => None,
        };
        let modifies = order.is_some();
        // Sent again as it is (anyone may read a pending CSR and send it back): the order
        // goes on as it was, and the issuer's answer to it is stored.
        let unchanged = modifies && same_csr;
        let rec = RequestRecord {
            csr_der: csr.der().to_vec(),
            submitted_at: self.now(),
            state: RequestState::Requested,
            dns_names: subject.dns_names.clone(),
            ip_addrs: subject.ip_addrs.iter().map(|ip| ip.to_string()).collect(),
            order,
        };
        // A request that appears meanwhile is not replaced (the store decides, in its
        // transaction): the check above was about the one read here.
        let rule = SubmitRule {
            allow_if_signed: env.settings.allow_duplicate_certs,
            replace_pending,
            new_only: !read,
        };
        // The autosign policy is asked only about a submission that will be stored (the
        // store's transaction decides; these reads spare a policy run and a signature
        // for one that a reader can already see refused; unread, a name the policy
        // signs by name is signed, and the store refuses it as not new).
        let refused =
            (pending && !rule.replace_pending) || (!rule.allow_if_signed && has_certificate);
        Ok(Prepared {
            csr,
            rec,
            rule,
            modifies,
            unchanged,
            refused,
            adds: unrequested && !refused,
        })
    }

    /// Keeps a well-formed CSR the policy refused as an invalid request with the reason
    /// (one record per name: it replaces an earlier invalid or failed one, never a
    /// pending request or a certificate), logs it and appends an `invalid` audit event,
    /// so that the admin sees what an agent asked for and why it was refused; the
    /// submitter still gets the 400. Puppet agents read that 400 as "submitted" and wait
    /// (and send the same CSR again: kept already, refused for the same reason, it
    /// changes nothing and is not logged again).
    fn keep_refused(
        &self,
        env: &EnvCa,
        name: &Certname,
        body: &[u8],
        refusal: &crate::ca::CaError,
    ) -> Result<(), AppError> {
        let Some((csr_der, dns_names, ip_addrs)) = crate::ca::refused_csr(body, name) else {
            return Ok(());
        };
        // The same refused CSR again, for the same reason (the policy may have changed
        // since): kept already; nothing to write, flush or log again.
        let held = self.store.request(&env.name, name)?;
        if let Some(RequestRecord {
            csr_der: kept,
            state:
                RequestState::Invalid {
                    rule: Some(rule),
                    reason,
                },
            ..
        }) = &held
        {
            if *kept == csr_der && rule == refusal.code() && *reason == refusal.to_string() {
                return Ok(());
            }
        }
        // Past the environment's bound on requests the refusal is answered, not kept.
        if held.is_none() {
            match self.room_for_request(&env.name) {
                Ok(()) => {}
                Err(AppError::Full(_)) => {
                    tracing::warn!(env = %env.name, certname = %name, rule = refusal.code(), "CSR refused by the policy; not kept: the environment holds as many requests as it may");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        let rec = RequestRecord {
            csr_der,
            submitted_at: self.now(),
            state: RequestState::Invalid {
                reason: refusal.to_string(),
                rule: Some(refusal.code().to_owned()),
            },
            dns_names,
            ip_addrs,
            order: None,
        };
        let rule = SubmitRule {
            allow_if_signed: false,
            replace_pending: false,
            new_only: false,
        };
        match self.store.submit_request(&env.name, name, &rec, rule)? {
            SubmitOutcome::Created | SubmitOutcome::Replaced => {
                self.store.flush()?;
                tracing::warn!(env = %env.name, certname = %name, rule = refusal.code(), reason = %refusal, "CSR refused by the policy; kept as an invalid request");
            }
            _ => {
                tracing::warn!(env = %env.name, certname = %name, rule = refusal.code(), reason = %refusal, "CSR refused by the policy");
            }
        }
        Ok(())
    }

    /// Whether a submission under `rule` that adds a request may store it: an error
    /// (503 `requests-full`) past `limits.max_requests`, but false for one made unread
    /// (`rule.new_only`), whose name may not be new: the read pass decides.
    pub(super) fn room_for(
        &self,
        env: &crate::ca::EnvName,
        rule: SubmitRule,
    ) -> Result<bool, AppError> {
        match self.room_for_request(env) {
            Ok(()) => Ok(true),
            Err(AppError::Full(_)) if rule.new_only => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Refuses (503 `requests-full`) a request that would be one more than
    /// `limits.max_requests` in `env`. The count is read from the store (counting no
    /// further than the bound) at most once a second per environment: by every caller
    /// until a first count is known, then by one caller while the others go on with the
    /// count as it was. It counts up the requests this node adds meanwhile: a bound on
    /// what anonymous submitters can store, passed by at most a second's concurrent
    /// submissions (on this node, those that find it while it is read again; on
    /// others, those of the second).
    fn room_for_request(&self, env: &crate::ca::EnvName) -> Result<(), AppError> {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(1);
        let bound = self.config.limits.max_requests;
        let cached = {
            let mut counts = self.request_counts();
            let c = counts.entry(env.clone()).or_insert(RequestCount {
                held: 0,
                read_at: None,
                reading: false,
            });
            match c.read_at {
                Some(at) if at.elapsed() < FRESH || c.reading => Some(c.held),
                Some(_) => {
                    c.reading = true;
                    None
                }
                None => None,
            }
        };
        let held = match cached {
            Some(n) => n,
            None => {
                // However the read ends, the next stale look reads again.
                let _reading = Reading { app: self, env };
                let n = self.store.count_requests(env, bound)?;
                if let Some(c) = self.request_counts().get_mut(env) {
                    c.held = n;
                    c.read_at = Some(std::time::Instant::now());
                }
                n
            }
        };
        if held >= bound {
            return Err(AppError::Full(format!(
                "{env} holds {held} requests, as many as [limits] max_requests allows; an admin signs, rejects or deletes some first"
            )));
        }
        if let Some(c) = self.request_counts().get_mut(env) {
            c.held += 1;
        }
        Ok(())
    }

    fn request_counts(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<crate::ca::EnvName, RequestCount>>
    {
        self.request_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `who` may replace the pending request whose CSR is `pending_csr` with
    /// `csr`: the same public key, an admin of the environment (global or its own; a
    /// name that holds authority beyond it, a global admin only: 403), or the node
    /// itself presenting its current, valid certificate.
    fn may_replace(
        &self,
        who: &Identity,
        env: &EnvCa,
        name: &Certname,
        pending_csr: &[u8],
        csr: &ValidatedCsr,
    ) -> Result<bool, AppError> {
        let key = |e| AppError::Pki(crate::ca::CaError::from(e));
        let new_key = csr.public_key().public_key_to_der().map_err(key)?;
        if crate::ca::csr_public_key_der(pending_csr).ok().as_ref() == Some(&new_key) {
            return Ok(true);
        }
        let member = who.environment.as_ref() == Some(&env.name);
        let admin = who.role == crate::authz::Role::Admin
            || (member
                && who
                    .certname
                    .as_ref()
                    .is_some_and(|c| env.settings.admins.contains(c)));
        if admin {
            // Whoever chooses the key of a request that an admin will sign acts on
            // the name as much as the signer does.
            let action = "replaces a pending request of";
            self.may_act_on(who, env, &csr.subject(), action)?;
            if let Some(pending) = self.csr_subject(env, name, pending_csr) {
                self.may_act_on(who, env, &pending, action)?;
            }
            return Ok(true);
        }
        if member && who.certname.as_ref() == Some(name) {
            if let Some(serial) = &who.serial {
                return Ok(self
                    .store
                    .certificate(&env.name, name)?
                    .is_some_and(|c| &c.serial == serial && c.revocation.is_none()));
            }
        }
        Ok(false)
    }

    /// Whether `new` would hold no authority in `env` that the CSR `approved` (the one an
    /// order was started for) did not: it held authority too, with the same extensions.
    fn no_more_authority(
        &self,
        env: &EnvCa,
        name: &Certname,
        approved: &[u8],
        new: &crate::ca::Subject,
    ) -> bool {
        let Some(approved) = self.csr_subject(env, name, approved) else {
            return false;
        };
        let sorted = |s: &crate::ca::Subject| {
            let mut e = s.extensions.clone();
            e.sort();
            e
        };
        self.holds_authority(env, &approved) && sorted(&approved) == sorted(new)
    }

    /// Refuses a request for a name certd keeps for itself (setup's admin and server
    /// certificates) in any environment, and for a global admin's name in an environment
    /// whose CA may not vouch for one: whoever would approve it, the certificate would
    /// name a global admin.
    fn check_reserved(&self, env: &EnvCa, name: &Certname) -> Result<(), AppError> {
        let reason = if self.own_names.contains(name) {
            "is certd's own"
        } else if self.config.is_global_admin_name(name)
            && !self.config.vouches_for_admins(&env.name)
        {
            "is a global administrator's, which this environment's CA may not vouch for"
        } else {
            return Ok(());
        };
        Err(reserved(format!("the certname {name} {reason}")))
    }

    /// Refuses a CSR (or a renewal) asking for one of certd's own names or addresses
    /// (the server certificate's) as certname or subject alternative name, in any
    /// environment.
    pub(super) fn check_server_names(&self, subject: &crate::ca::Subject) -> Result<(), AppError> {
        // The certname too (a renewal), but for setup's admin's: its holder renews it.
        let certname =
            Some(subject.certname.as_str()).filter(|c| *c != self.config.admin_certname.as_str());
        let name = certname
            .into_iter()
            .chain(subject.dns_names.iter().map(String::as_str))
            .find(|d| self.own_names.iter().any(|o| o.as_str() == *d));
        // An IPv4-mapped IPv6 address is the IPv4 address to many clients.
        let ip = subject
            .ip_addrs
            .iter()
            .find(|ip| self.own_ips.contains(&ip.to_canonical()));
        let asked = match (name, ip) {
            (Some(name), _) => format!("the DNS name {name}"),
            (None, Some(ip)) => format!("the IP address {ip}"),
            (None, None) => return Ok(()),
        };
        Err(reserved(format!(
            "{asked} is certd's own server's; no environment certifies it"
        )))
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
                state: RequestState::Invalid { reason, .. },
                ..
            }) => Err(AppError::RequestInvalid {
                certname: name,
                reason,
            }),
            // An issuer's failure is in the status admins read; anyone may read this.
            Some(RequestRecord {
                state: RequestState::Error { .. },
                ..
            }) => Err(AppError::RequestInvalid {
                certname: name,
                reason: "the issuer did not sign it; an administrator sees why in its certificate_status"
                    .into(),
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
        self.may_drop_request(who, &env, &name)?;
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

impl App {
    /// Whether `who` may reject or delete `name`'s request (either face).
    pub(super) fn may_drop_request(
        &self,
        who: &Identity,
        env: &EnvCa,
        name: &Certname,
    ) -> Result<(), AppError> {
        let action = "rejects or deletes a request of";
        self.may_act_on_stored(who, env, name, Acted::Request, action)
    }
}

/// 400 `reserved-certname` for a CSR naming what certd keeps for itself.
fn reserved(message: String) -> AppError {
    AppError::InvalidInput(crate::ca::CaError::InvalidCsr {
        rule: "reserved-certname",
        puppet: message.clone(),
        message,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ca::{build_csr, KeyType, SystemClock};
    use crate::config::Config;
    use crate::store::{DataDir, MemStore};

    /// A CSR for `name` with a new P-256 key.
    pub(in crate::app) fn csr(name: &str) -> Vec<u8> {
        let key = KeyType::EcP256.generate().unwrap();
        build_csr(&key, &Certname::parse(name).unwrap(), &[]).unwrap()
    }

    /// With every signing place taken, an admin's sign waits a while for one, then
    /// answers Busy (503) and leaves the request pending; an autosigned submission is
    /// stored alone, durably, and answers Busy too. (A bound of 0, which once drove
    /// these over HTTP, is now refused by the configuration.)
    #[test]
    fn signings_beyond_the_bound_are_busy_and_leave_the_request_pending() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml(
            "[ca]\nkey_type = \"ec-p256\"\n[limits]\nmax_pending_signings = 1\n\
             [environments.auto]\nautosign = true\n",
            &dir.path().join("certd.toml"),
        )
        .unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let app = App::new(
            config,
            data,
            Arc::new(MemStore::new()),
            Arc::new(SystemClock),
            Arc::new(crate::ca::OsRng),
        )
        .unwrap();
        let anon = Identity::anonymous();
        let held = app.try_signing_slot().expect("the one place");
        assert_eq!(
            app.submit(&anon, "production", "busy1", &csr("busy1"))
                .unwrap(),
            Submitted::Created
        );
        let started = std::time::Instant::now();
        assert!(matches!(
            app.sign(&anon, "production", "busy1", None),
            Err(AppError::Busy)
        ));
        assert!(
            started.elapsed() >= std::time::Duration::from_secs(5),
            "it waited first"
        );
        assert!(app.request("production", "busy1").is_ok(), "still pending");
        assert!(matches!(
            app.submit(&anon, "auto", "busy2", &csr("busy2")),
            Err(AppError::Busy)
        ));
        assert!(app.request("auto", "busy2").is_ok(), "stored alone");
        assert!(app.certificate("auto", "busy2").is_err());
        drop(held);
        assert!(app.sign(&anon, "production", "busy1", None).is_ok());
    }

    /// A policy or a sweep approves the CSR it decided on: when another CSR has
    /// replaced it meanwhile (anyone holding the key may replace it, with extensions
    /// that would hold authority), nothing is signed and the request stays pending.
    #[test]
    fn an_approval_decided_on_one_csr_signs_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml(
            "[ca]\nkey_type = \"ec-p256\"\n",
            &dir.path().join("certd.toml"),
        )
        .unwrap();
        let app = App::new(
            config,
            DataDir::new(dir.path().join("data")),
            Arc::new(MemStore::new()),
            Arc::new(SystemClock),
            Arc::new(crate::ca::OsRng),
        )
        .unwrap();
        let anon = Identity::anonymous();
        let (seen, stored) = (csr("node1"), csr("node1"));
        let env = app.env_ca("production").unwrap();
        let name = Certname::parse("node1").unwrap();
        let policy = env.settings.csr_policy(&app.config.limits);
        let decided = ValidatedCsr::parse(&seen, &name, &policy).unwrap();
        app.submit(&anon, "production", "node1", &stored).unwrap();
        let outcome = app.approve(&env, &name, None, Some(decided), None);
        assert!(
            matches!(
                outcome,
                Err(AppError::Conflict {
                    code: "request-changed",
                    ..
                })
            ),
            "{outcome:?}"
        );
        assert!(app.certificate("production", "node1").is_err(), "signed");
        assert!(app.request("production", "node1").is_ok(), "still pending");
    }
}
