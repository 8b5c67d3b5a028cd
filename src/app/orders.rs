//! Asynchronous issuance: approving a request for an issuer that answers later, the
//! worker that calls it again when the order falls due, issuer readiness, cancel, and
//! the event log. The decisions (backoff, budget, what an answer means) are in
//! [`crate::orders`]; this file runs them against the store.
//!
//! Every order lives in the store with its request: its due time, attempts, the issuer's
//! `plugin_meta`. A worker takes an order with a lease (a compare-and-set on the record),
//! calls the issuer outside any lock, and stores the result with another compare-and-set
//! against the leased record, so a request replaced or deleted meanwhile is never
//! overwritten. A crash at any point leaves either the old record (called again after
//! the lease runs out; issuers are idempotent) or the new one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::certificates::{cert_record, Issued, Signing};
use super::{App, AppError, EnvCa};
use crate::ca::{Certname, EnvName, ValidatedCsr};
use crate::issuer::{Configured, OrderRequest, Outcome, PluginMeta};
use crate::orders::{self, Next, Policy, LEASE_MS};
use crate::store::{
    AuditEvent, EventKind, IssueOutcome, Order, RequestRecord, RequestState, SubStatus,
};

/// How long an approval waits for the issuer's first answer before saying 202.
const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(5);
/// An issuer lane taken for one order's work: freed (and the worker woken) when dropped.
struct LaneHeld {
    app: Arc<App>,
    lane: String,
}

impl LaneHeld {
    /// Takes `lane` unless it is busy.
    fn take(app: &Arc<App>, lane: String) -> Option<LaneHeld> {
        let taken = app
            .order_lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lane.clone());
        taken.then(|| LaneHeld {
            app: Arc::clone(app),
            lane,
        })
    }
}

impl Drop for LaneHeld {
    fn drop(&mut self) {
        self.app
            .order_lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.lane);
        self.app.wake_orders();
    }
}

/// Orders read from the due-time index at a time.
const DUE_PAGE: usize = 256;

/// How often remote issuers are probed for readiness.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Pause before looking again at an order whose issuer is not ready.
const NOT_READY_PAUSE: i64 = 2;
/// How often a worker reads a request replaced under it again to give its lease back.
const HAND_BACK_TRIES: usize = 3;

/// Wall-clock milliseconds (order due times and leases).
/// One issuer's readiness, as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct IssuerStatus {
    /// The environment.
    pub environment: String,
    /// The issuer's name.
    pub name: String,
    /// Its back end type.
    #[serde(rename = "type")]
    pub kind: crate::config::IssuerKind,
    /// Whether it takes orders now.
    pub ready: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An audit event as `GET /{env}/events` and webhooks show it.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// Position in the log (ids increase; `?after=` takes one).
    pub id: u64,
    /// When, RFC 3339.
    pub at: String,
    /// The environment.
    pub environment: String,
    /// The certname (empty for environment events).
    pub certname: String,
    /// What happened.
    pub kind: EventKind,
    /// More about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl From<&AuditEvent> for EventView {
    fn from(e: &AuditEvent) -> Self {
        EventView {
            id: e.id,
            at: super::rfc3339(e.at),
            environment: e.env.clone(),
            certname: e.certname.clone(),
            kind: e.kind,
            detail: e.detail.clone(),
        }
    }
}

fn key(env: &EnvName, issuer: &Configured) -> String {
    format!("{env}/{}", issuer.name)
}

fn policy(issuer: &Configured) -> Policy {
    Policy {
        retry_budget: issuer.spec.retry_budget(),
        max_backoff: issuer.spec.max_backoff(),
    }
}

impl App {
    /// Approves `req` (pending, no order yet) for `issuer`, which answers later: stores
    /// the order durably, wakes the worker, and waits a little for the issuer's first
    /// answer. `Issued` when it signed at once (cfssl), `Accepted` otherwise.
    pub(super) fn start_order(
        &self,
        env: &EnvCa,
        name: &Certname,
        req: RequestRecord,
        issuer: &Configured,
        validity: i64,
    ) -> Result<Signing, AppError> {
        let now = self.now();
        let (sub_status, message) = match self.readiness_of(&env.name, issuer) {
            Ok(()) => (
                SubStatus::WaitingForCa,
                format!("approved; handed to issuer {}", issuer.name),
            ),
            Err(m) => (SubStatus::IssuerNotReady, m),
        };
        let mut approved = req.clone();
        approved.order = Some(Order {
            issuer: issuer.name.clone(),
            sub_status,
            sub_status_message: message,
            plugin_meta: PluginMeta::new(),
            approved_at: now,
            started_at: 0,
            due_ms: self.order_now_ms(),
            attempts: 0,
            failures: 0,
            validity,
            modified: false,
            lease_until_ms: 0,
        });
        let detail = Some(format!("issuer {}", issuer.name));
        if !self.store.update_request(
            &env.name,
            name,
            &req,
            &approved,
            Some((EventKind::Approved, detail)),
            now,
        )? {
            return Err(AppError::Conflict {
                code: "request-changed",
                detail: format!(
                    "the request of {name} changed while it was being approved; sign again"
                ),
            });
        }
        self.store.flush()?;
        tracing::info!(env = %env.name, certname = %name, issuer = %issuer.name, "approved; order handed to the worker");
        self.wake_orders();
        let deadline = Instant::now() + FIRST_ANSWER_WAIT;
        loop {
            let seen = self.orders_generation();
            match self.store.request(&env.name, name)? {
                Some(RequestRecord {
                    state: RequestState::Requested,
                    order: Some(o),
                    ..
                }) if o.attempts == 0
                    && o.sub_status != SubStatus::IssuerNotReady
                    && Instant::now() < deadline =>
                {
                    self.wait_orders(seen, deadline - Instant::now());
                }
                Some(RequestRecord {
                    state: RequestState::Requested,
                    order,
                    ..
                }) => {
                    return Ok(Signing::Accepted {
                        sub_status: order.map(|o| o.sub_status),
                    })
                }
                Some(RequestRecord {
                    state: RequestState::Error { reason } | RequestState::Invalid { reason, .. },
                    ..
                }) => {
                    // The back end's words (a program, its exit status, its stderr) go to
                    // the log and to the status admins read, not to the caller, who may
                    // be an anonymous submitter.
                    tracing::warn!(env = %env.name, certname = %name, issuer = %issuer.name, %reason, "issuer did not sign");
                    return Err(AppError::Conflict {
                        code: "issuance-failed",
                        detail: format!(
                            "the issuer did not sign {name}; an administrator sees why in its certificate_status"
                        ),
                    });
                }
                None => {
                    return match self.store.certificate(&env.name, name)? {
                        Some(_) => Ok(Signing::Issued(Issued {
                            env: env.name.to_string(),
                            certname: name.clone(),
                        })),
                        None => Err(AppError::NotFound(format!(
                            "the request of {name} was withdrawn"
                        ))),
                    }
                }
            }
        }
    }

    /// The issuer of `env` that serves `csr`, and the validity to ask for.
    pub(super) fn issuer_for<'e>(
        &self,
        env: &'e EnvCa,
        csr: &ValidatedCsr,
        validity: i64,
    ) -> Result<&'e Configured, AppError> {
        let req = OrderRequest {
            env: &env.name,
            csr,
            validity,
            now: self.now(),
        };
        env.issuers
            .iter()
            .find(|i| i.supports(&req))
            .ok_or_else(|| AppError::Conflict {
                code: "no-issuer",
                detail: format!(
                    "no issuer of environment {} serves {}",
                    env.name,
                    csr.certname()
                ),
            })
    }

    /// An in-process issuer is always ready; a remote one as its last probe found it,
    /// and not ready until it has been probed (an environment created at run time is
    /// probed within [`PROBE_EVERY`]).
    fn readiness_of(&self, env: &EnvName, issuer: &Configured) -> Result<(), String> {
        if issuer.backend.in_process() {
            return Ok(());
        }
        self.readiness
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(env, issuer))
            .cloned()
            .unwrap_or_else(|| Err("not probed yet".into()))
    }

    /// Every issuer's readiness, for `/status`.
    pub fn issuer_statuses(&self) -> Vec<IssuerStatus> {
        self.env_list()
            .iter()
            .flat_map(|env| {
                env.issuers.iter().map(|i| {
                    let r = self.readiness_of(&env.name, i);
                    IssuerStatus {
                        environment: env.name.to_string(),
                        name: i.name.clone(),
                        kind: i.kind,
                        ready: r.is_ok(),
                        message: r.err(),
                    }
                })
            })
            .collect()
    }

    fn orders_generation(&self) -> u64 {
        *self
            .orders_signal
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the worker and everyone waiting for an order's progress.
    pub(super) fn wake_orders(&self) {
        let mut g = self
            .orders_signal
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *g += 1;
        self.orders_signal.1.notify_all();
    }

    /// Waits until the generation moves past `seen`, or `timeout`.
    fn wait_orders(&self, seen: u64, timeout: Duration) {
        let g = self
            .orders_signal
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let _ = self
            .orders_signal
            .1
            .wait_timeout_while(g, timeout, |g| *g == seen);
    }

    /// Starts the order worker and the readiness prober, until `stop`.
    pub(super) fn spawn_order_worker(
        self: &Arc<Self>,
        stop: Arc<super::workers::Stop>,
    ) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
        let app = Arc::clone(self);
        let stopping = stop.clone();
        let worker = std::thread::Builder::new()
            .name("certd-orders".into())
            .spawn(move || loop {
                if stopping.stopped() {
                    return;
                }
                let seen = app.orders_generation();
                let next_due = match app.work_due_orders() {
                    Ok(n) => n,
                    Err(e) => {
                        // Not wait_orders: a failed pass may itself have woken it (a
                        // lane freed when its thread could not start), and the next
                        // pass would fail at once again.
                        tracing::error!(error = %e, "order worker");
                        if stopping.sleep(Duration::from_secs(1)) {
                            return;
                        }
                        continue;
                    }
                };
                let pause = next_due
                    .map(|due| (due - app.order_now_ms()).clamp(10, 1000))
                    .unwrap_or(1000);
                app.wait_orders(seen, Duration::from_millis(pause as u64));
            })?;
        // Always: an environment created at run time may bring a remote issuer.
        let app = Arc::clone(self);
        let prober = std::thread::Builder::new()
            .name("certd-issuer-probe".into())
            .spawn(move || loop {
                app.probe_issuers();
                if stop.sleep(PROBE_EVERY) {
                    return;
                }
            })?;
        Ok(vec![worker, prober])
    }

    /// Orders being worked now (each holds its issuer's lane).
    pub(super) fn orders_under_way(&self) -> usize {
        self.order_lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn probe_issuers(&self) {
        for env in self.env_list() {
            for i in env.issuers.iter().filter(|i| !i.backend.in_process()) {
                let r = i.backend.ready();
                let k = key(&env.name, i);
                let mut map = self.readiness.write().unwrap_or_else(|p| p.into_inner());
                if map.get(&k) != Some(&r) {
                    match &r {
                        Ok(()) => tracing::info!(issuer = %k, "issuer ready"),
                        Err(m) => tracing::warn!(issuer = %k, reason = %m, "issuer not ready"),
                    }
                    map.insert(k, r);
                }
            }
        }
    }

    /// One pass of the order worker: hands every due order, read through the store's
    /// due-time index, to its issuer's lane; returns the earliest due time of those
    /// left. Each issuer (of each environment) has one lane: one call to it at a time, on
    /// a thread of its own, so a slow or hung back end holds its own orders only, never
    /// another issuer's or another tenant's. An order whose lane is busy waits for the
    /// lane, which wakes this worker when it is free.
    pub fn work_due_orders(self: &Arc<Self>) -> Result<Option<i64>, AppError> {
        let mut next: Option<i64> = None;
        for env in self.env_list() {
            let mut after: Option<(i64, Certname)> = None;
            loop {
                let now = self.order_now_ms();
                let page = self.store.due_orders(
                    &env.name,
                    now,
                    after.as_ref().map(|(at, n)| (*at, n.as_str())),
                    DUE_PAGE,
                )?;
                if let Some(at) = page.next_ms.filter(|at| *at > now) {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                let Some((last, rec)) = page.due.last() else {
                    break;
                };
                after = Some((rec.order_free_at().unwrap_or(now), last.clone()));
                let full = page.due.len() == DUE_PAGE;
                for (name, rec) in page.due {
                    let Some(order) = rec.order.as_ref() else {
                        continue;
                    };
                    let Some(lane) = LaneHeld::take(self, format!("{}/{}", env.name, order.issuer))
                    else {
                        continue; // its issuer is busy; the lane wakes the worker when free
                    };
                    let env = Arc::clone(&env);
                    // The lane moves into the thread and is freed however the work ends
                    // (a panic included), or here when no thread could be started.
                    let spawned = std::thread::Builder::new()
                        .name("certd-order".into())
                        .spawn(move || {
                            if let Err(e) = lane.app.work_order(&env, &name, rec) {
                                tracing::error!(env = %env.name, certname = %name, error = %e, "order");
                            }
                        });
                    if let Err(e) = spawned {
                        return Err(AppError::Task(format!(
                            "order lane: cannot start a thread: {e}"
                        )));
                    }
                }
                if !full {
                    break;
                }
            }
        }
        Ok(next)
    }

    /// Leases one due order, calls its issuer, and stores the result.
    fn work_order(&self, env: &EnvCa, name: &Certname, rec: RequestRecord) -> Result<(), AppError> {
        let Some(order) = rec.order.clone() else {
            return Ok(());
        };
        let mut leased = rec.clone();
        let mut lease = order.clone();
        lease.lease_until_ms = self.order_now_ms() + LEASE_MS;
        leased.order = Some(lease.clone());
        if !self
            .store
            .update_request(&env.name, name, &rec, &leased, None, self.now())?
        {
            return Ok(()); // changed meanwhile; looked at again on the next pass
        }
        let (written, handed) = self.work_leased(env, name, &leased, &lease)?;
        if !written {
            self.hand_back(env, name, &lease, handed)?;
        }
        Ok(())
    }

    /// [`App::work_order`] once the lease is held: calls the issuer and writes what it
    /// answered, compare-and-set against `leased`. Whether that write was made, and the
    /// order as the issuer now knows it (its `plugin_meta`, and `started_at` once it was
    /// handed over).
    fn work_leased(
        &self,
        env: &EnvCa,
        name: &Certname,
        leased: &RequestRecord,
        lease: &Order,
    ) -> Result<(bool, Order), AppError> {
        let untouched = || lease.clone();
        let Some(issuer) = env.issuers.iter().find(|i| i.name == lease.issuer) else {
            let reason = format!("issuer {} is no longer configured", lease.issuer);
            let written = self.end_order(env, name, leased, RequestState::Error { reason })?;
            return Ok((written, untouched()));
        };
        let csr = match ValidatedCsr::parse(
            &leased.csr_der,
            name,
            &env.settings.csr_policy(&self.config.limits),
        ) {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("the CSR no longer passes the policy: {e}");
                let written = self.end_order(env, name, leased, RequestState::Error { reason })?;
                return Ok((written, untouched()));
            }
        };
        if lease.started_at == 0 {
            if let Err(m) = self.readiness_of(&env.name, issuer) {
                let (parked, changed) =
                    orders::park_not_ready(lease, &m, self.order_now_ms(), NOT_READY_PAUSE);
                let written = self.keep_order(env, name, leased, parked, changed)?;
                return Ok((written, untouched()));
            }
        }
        let req = OrderRequest {
            env: &env.name,
            csr: &csr,
            validity: lease.validity,
            now: self.now(),
        };
        let mut meta = lease.plugin_meta.clone();
        let outcome = if lease.modified && lease.started_at != 0 {
            match issuer.backend.modifier() {
                Some(m) => m.modify(&req, &mut meta),
                None => issuer.backend.issue(&req, &mut meta),
            }
        } else if lease.started_at == 0 {
            issuer.backend.issue(&req, &mut meta)
        } else {
            issuer.backend.check(&req, &mut meta)
        };
        tracing::debug!(env = %env.name, certname = %name, ?outcome, "issuer answered");
        let mut with_meta = lease.clone();
        with_meta.plugin_meta = meta;
        // What the issuer now holds: the order, from this call on.
        let mut handed = with_meta.clone();
        if handed.started_at == 0 {
            handed.started_at = self.order_now_ms().div_euclid(1000);
        }
        let mut jitter = [0u8; 2];
        self.rng.fill(&mut jitter);
        let jitter = f64::from(u16::from_be_bytes(jitter)) / 65536.0;
        let written = match orders::apply(
            &with_meta,
            outcome,
            self.order_now_ms(),
            policy(issuer),
            jitter,
        ) {
            Next::Issue(der) => {
                let record = cert_record(&der, self.now())?;
                // Stored only for the request as leased: not for one that replaced it
                // meanwhile (the same CSR sent again after a reject included), nor
                // after another worker took the order over.
                match self.store.issue(&env.name, name, leased, &record)? {
                    IssueOutcome::Issued => {
                        self.store.flush()?;
                        tracing::info!(env = %env.name, certname = %name, issuer = %issuer.name, "issued");
                        self.metrics.issued(env.name.as_str(), &issuer.name);
                        true
                    }
                    IssueOutcome::RequestChanged | IssueOutcome::NoRequest => {
                        tracing::info!(env = %env.name, certname = %name, "issued for a request changed meanwhile (replaced, withdrawn, or its order leased again); dropped");
                        false
                    }
                    other => {
                        let reason = format!("the issued certificate cannot be stored: {other:?}");
                        self.end_order(env, name, leased, RequestState::Error { reason })?
                    }
                }
            }
            Next::Keep { order, changed } => self.keep_order(env, name, leased, order, changed)?,
            Next::End(state) => self.end_order(env, name, leased, state)?,
        };
        Ok((written, handed))
    }

    /// After this worker's write found the leased request changed: a replacement that
    /// kept the order and this worker's lease (a new CSR `PUT` while the order was under
    /// way, `requests.rs`) is given back at once, not when the lease runs out, with what
    /// the issuer was told (`handed`: its `plugin_meta`, and that it has the order), so
    /// that the next worker modifies that order instead of starting another. Anything
    /// else (rejected, cleaned, taken over by another worker) is left as it is. A
    /// request replaced again meanwhile is read again, a few times.
    fn hand_back(
        &self,
        env: &EnvCa,
        name: &Certname,
        lease: &Order,
        handed: Order,
    ) -> Result<(), AppError> {
        for _ in 0..HAND_BACK_TRIES {
            let Some(current) = self.store.request(&env.name, name)? else {
                return Ok(());
            };
            let holds = current.state == RequestState::Requested
                && current.order.as_ref().is_some_and(|o| {
                    o.issuer == lease.issuer && o.lease_until_ms == lease.lease_until_ms
                });
            if !holds {
                return Ok(());
            }
            let mut next = current.clone();
            if let Some(o) = next.order.as_mut() {
                o.lease_until_ms = 0;
                o.plugin_meta = handed.plugin_meta.clone();
                if o.started_at == 0 {
                    o.started_at = handed.started_at;
                }
            }
            if self
                .store
                .update_request(&env.name, name, &current, &next, None, self.now())?
            {
                self.store.flush()?;
                return Ok(());
            }
        }
        Ok(())
    }

    fn keep_order(
        &self,
        env: &EnvCa,
        name: &Certname,
        leased: &RequestRecord,
        order: Order,
        changed: bool,
    ) -> Result<bool, AppError> {
        let event = changed.then(|| {
            (
                EventKind::OrderUpdated,
                Some(format!(
                    "{}: {}",
                    order.sub_status, order.sub_status_message
                )),
            )
        });
        let mut next = leased.clone();
        next.order = Some(order);
        let written =
            self.store
                .update_request(&env.name, name, leased, &next, event, self.now())?;
        if written {
            self.store.flush()?;
        }
        Ok(written)
    }

    fn end_order(
        &self,
        env: &EnvCa,
        name: &Certname,
        leased: &RequestRecord,
        state: RequestState,
    ) -> Result<bool, AppError> {
        let event = match &state {
            RequestState::Error { reason } => (EventKind::Error, Some(reason.clone())),
            RequestState::Invalid { reason, .. } => (EventKind::Canceled, Some(reason.clone())),
            RequestState::Requested => return Ok(true),
        };
        tracing::warn!(env = %env.name, certname = %name, detail = ?event.1, "order ended without a certificate");
        let mut next = leased.clone();
        next.state = state;
        next.order = None;
        let written =
            self.store
                .update_request(&env.name, name, leased, &next, Some(event), self.now())?;
        if written {
            self.store.flush()?;
        }
        Ok(written)
    }

    /// Withdraws an order from its issuer, when the issuer can (best effort: the local
    /// request is rejected or deleted whatever the issuer says). The call runs on a
    /// thread of its own, away from the HTTP runtime's.
    pub(super) fn cancel_order(&self, env: &EnvCa, name: &Certname, rec: &RequestRecord) {
        let Some(order) = &rec.order else { return };
        let Some(issuer) = env.issuers.iter().find(|i| i.name == order.issuer) else {
            return;
        };
        if order.started_at == 0 {
            return; // never handed over
        }
        let Ok(csr) = ValidatedCsr::parse(
            &rec.csr_der,
            name,
            &env.settings.csr_policy(&self.config.limits),
        ) else {
            return;
        };
        let mut meta = order.plugin_meta.clone();
        let outcome = std::thread::scope(|s| {
            s.spawn(|| {
                issuer.backend.canceller().map(|c| {
                    c.cancel(
                        &OrderRequest {
                            env: &env.name,
                            csr: &csr,
                            validity: order.validity,
                            now: self.now(),
                        },
                        &mut meta,
                    )
                })
            })
            .join()
            .ok()
            .flatten()
        });
        match outcome {
            Some(Outcome::Canceled { .. }) => {
                tracing::info!(env = %env.name, certname = %name, issuer = %issuer.name, "order withdrawn from the issuer")
            }
            other => {
                tracing::warn!(env = %env.name, certname = %name, issuer = %issuer.name, answer = ?other, "the issuer did not confirm the cancellation")
            }
        }
    }

    /// `GET /{env}/events?after=ID&limit=N`: the environment's events after `after`, in
    /// order, at most `limit`.
    pub fn events(
        &self,
        raw_env: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventView>, AppError> {
        let env = self.env_ca(raw_env)?;
        // By the store's index of the environment's events: a quiet environment's
        // listing reads its own events, not the whole log.
        Ok(self
            .store
            .audit_of(&env.name, after, limit)?
            .iter()
            .map(EventView::from)
            .collect())
    }
}
