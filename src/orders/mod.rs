//! Orders: what an issuer's answer does to an approved request (see `manual::issuers`).
//! Pure decisions over [`Order`] records; `app` runs the worker that calls issuers
//! and stores what this module decides.
//!
//! - `Waiting` is polled again after the issuer's `retry_after`.
//! - `Unavailable` and `ClientDataIssue` back off exponentially from `retry_after`,
//!   doubling per consecutive failure up to `max_backoff`, with jitter (each delay is
//!   80–100% of its nominal value, so retries never bunch up).
//! - Once the order has been with its issuer longer than the retry budget, it is an
//!   `error`.

use crate::ca::UnixTime;
use crate::issuer::Outcome;
use crate::store::{Order, RequestState, SubStatus};

/// How long a worker holds an order it is working on (milliseconds); a worker that dies
/// mid-call loses the lease after this and another call is made.
pub const LEASE_MS: i64 = 60_000;

/// The retry policy of one issuer.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Seconds an order may stay with its issuer before it is an error.
    pub retry_budget: i64,
    /// Longest pause between two calls, seconds.
    pub max_backoff: i64,
}

/// What to do with the request after an issuer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Store the certificate (DER).
    Issue(Vec<u8>),
    /// Keep the order, updated; `changed` when its `sub_status` differs from before.
    Keep {
        /// The updated order.
        order: Order,
        /// Whether `sub_status` changed.
        changed: bool,
    },
    /// End the request in this state (`Invalid` when canceled by the CA, `Error` when
    /// it failed or ran out of budget).
    End(RequestState),
}

/// The nominal pause after `failures` consecutive failures, before jitter: `retry_after`
/// doubled per failure after the first, at most `max_backoff`, at least one second.
pub fn backoff(retry_after: i64, failures: u32, max_backoff: i64) -> i64 {
    let base = retry_after.max(1);
    let factor = 1_i64 << failures.saturating_sub(1).min(30);
    base.saturating_mul(factor).min(max_backoff.max(1)).max(1)
}

/// Applies `outcome` to `order` at `now_ms`; `jitter` in [0, 1) picks where in the
/// 80–100% band the next pause falls.
pub fn apply(order: &Order, outcome: Outcome, now_ms: i64, policy: Policy, jitter: f64) -> Next {
    let now: UnixTime = now_ms.div_euclid(1000);
    let started = if order.started_at == 0 {
        now
    } else {
        order.started_at
    };
    let (sub_status, message, retry_after, failing) = match outcome {
        Outcome::Issued { cert_der } => return Next::Issue(cert_der),
        Outcome::Canceled { message } => {
            return Next::End(RequestState::Invalid {
                reason: format!("canceled by the CA: {message}"),
                rule: None,
            })
        }
        Outcome::Failed { message } => return Next::End(RequestState::Error { reason: message }),
        Outcome::Waiting {
            retry_after,
            message,
        } => (SubStatus::WaitingForCa, message, retry_after, false),
        Outcome::Unavailable {
            retry_after,
            message,
        } => (SubStatus::CaUnavailable, message, retry_after, true),
        Outcome::ClientDataIssue {
            retry_after,
            message,
        } => (SubStatus::ClientDataIssue, message, retry_after, true),
    };
    if now - started >= policy.retry_budget {
        return Next::End(RequestState::Error {
            reason: format!(
                "gave up after {}s (retry budget {}s); last: {sub_status}: {message}",
                now - started,
                policy.retry_budget
            ),
        });
    }
    let failures = if failing { order.failures + 1 } else { 0 };
    let nominal = if failing {
        backoff(retry_after, failures, policy.max_backoff)
    } else {
        retry_after.clamp(1, policy.max_backoff.max(1))
    };
    let delay_ms = (nominal as f64 * 1000.0 * (0.8 + 0.2 * jitter.clamp(0.0, 1.0))) as i64;
    let mut next = order.clone();
    next.sub_status = sub_status;
    next.sub_status_message = message;
    next.started_at = started;
    next.attempts = order.attempts + 1;
    next.failures = failures;
    next.due_ms = now_ms + delay_ms;
    next.modified = false;
    next.lease_until_ms = 0;
    Next::Keep {
        changed: next.sub_status != order.sub_status,
        order: next,
    }
}

/// The order parked because its issuer is not ready: it waits (without spending its
/// budget, which runs from the first call) and is looked at again after `pause` seconds.
pub fn park_not_ready(order: &Order, message: &str, now_ms: i64, pause: i64) -> (Order, bool) {
    let mut next = order.clone();
    next.sub_status = SubStatus::IssuerNotReady;
    next.sub_status_message = message.to_owned();
    next.due_ms = now_ms + pause.max(1) * 1000;
    next.lease_until_ms = 0;
    let changed = order.sub_status != next.sub_status;
    (next, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Order {
        Order {
            issuer: "up".into(),
            sub_status: SubStatus::WaitingForCa,
            sub_status_message: String::new(),
            plugin_meta: Default::default(),
            approved_at: 1000,
            started_at: 1000,
            due_ms: 0,
            attempts: 1,
            failures: 0,
            validity: 3600,
            modified: false,
            lease_until_ms: 5,
        }
    }

    const P: Policy = Policy {
        retry_budget: 100,
        max_backoff: 8,
    };

    fn unavailable() -> Outcome {
        Outcome::Unavailable {
            retry_after: 1,
            message: "down".into(),
        }
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_the_cap() {
        let delays: Vec<i64> = (1..=6).map(|f| backoff(1, f, 8)).collect();
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
        assert_eq!(backoff(30, 1, 600), 30);
        assert_eq!(backoff(0, 1, 600), 1);
        assert_eq!(backoff(1, u32::MAX, 600), 600);
    }

    #[test]
    fn failures_back_off_with_jitter_and_waiting_resets_them() {
        let mut o = order();
        let mut dues = Vec::new();
        for i in 0..4 {
            let now = 1_001_000 + i * 100;
            match apply(&o, unavailable(), now, P, 0.5) {
                Next::Keep { order, changed } => {
                    assert_eq!(changed, i == 0, "only the first changes sub_status");
                    assert_eq!(order.sub_status, SubStatus::CaUnavailable);
                    assert_eq!(order.lease_until_ms, 0);
                    dues.push(order.due_ms - now);
                    o = order;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(dues, [900, 1800, 3600, 7200]);
        // jitter stays within 80-100%.
        let Next::Keep { order: lo, .. } = apply(&o, unavailable(), 1_002_000, P, 0.0) else {
            panic!()
        };
        let Next::Keep { order: hi, .. } = apply(&o, unavailable(), 1_002_000, P, 0.999) else {
            panic!()
        };
        assert_eq!(
            (lo.due_ms - 1_002_000, hi.due_ms - 1_002_000 < 8000),
            (6400, true)
        );
        let waiting = Outcome::Waiting {
            retry_after: 2,
            message: "not yet".into(),
        };
        let Next::Keep { order, changed } = apply(&o, waiting, 1_003_000, P, 1.0) else {
            panic!()
        };
        assert!(changed);
        assert_eq!((order.failures, order.due_ms), (0, 1_005_000));
    }

    #[test]
    fn the_budget_ends_the_order_in_error() {
        let o = order();
        match apply(&o, unavailable(), 1_100_000, P, 0.5) {
            Next::End(RequestState::Error { reason }) => {
                assert!(reason.contains("retry budget 100s"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            apply(&o, unavailable(), 1_099_000, P, 0.5),
            Next::Keep { .. }
        ));
        assert!(matches!(
            apply(
                &o,
                Outcome::Failed {
                    message: "no".into()
                },
                1_001_000,
                P,
                0.5
            ),
            Next::End(RequestState::Error { .. })
        ));
        assert!(matches!(
            apply(
                &o,
                Outcome::Canceled {
                    message: "x".into()
                },
                1_001_000,
                P,
                0.5
            ),
            Next::End(RequestState::Invalid { .. })
        ));
        assert_eq!(
            apply(&o, Outcome::Issued { cert_der: vec![1] }, 1_001_000, P, 0.5),
            Next::Issue(vec![1])
        );
    }
}
