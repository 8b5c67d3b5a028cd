//! `/metrics` (Prometheus text format 0.0.4): request counts and latency histograms per
//! route, method and status; certificates issued per environment and issuer, and those
//! signed but not stored per environment; each environment's CRL size and age; the
//! store's size on disk.
//!
//! Labels come from bounded sets only (route patterns, not paths), so a scan of random
//! URLs cannot grow the registry: every unmatched path is one `route="unmatched"`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::App;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    issued: Mutex<BTreeMap<(String, String), u64>>,
    discarded: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Records one answered request.
    pub fn observe(&self, route: &str, method: &str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let h = map
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default();
        h.count += 1;
        h.sum += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
    }

    /// Counts one certificate issued.
    pub(super) fn issued(&self, env: &str, issuer: &str) {
        *self
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((env.to_owned(), issuer.to_owned()))
            .or_default() += 1;
    }

    /// Counts one certificate signed here that the store then refused as the name's
    /// certificate (its serial was taken, or the name's request or certificate did not
    /// allow it); it was never served. A write that failed is not counted.
    pub(super) fn discarded(&self, env: &str) {
        *self
            .discarded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(env.to_owned())
            .or_default() += 1;
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl App {
    /// The registry, for the HTTP layer to record requests in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `GET /metrics`: everything, as Prometheus text.
    pub fn render_metrics(&self, who: &crate::authz::Identity) -> String {
        // An environment's names and volumes are shown to a global admin, and to anyone
        // else only for the environment their certificate is from.
        let visible = |env: &str| {
            who.role == crate::authz::Role::Admin
                || who.environment.as_ref().is_some_and(|e| e.as_str() == env)
        };
        let mut out = String::new();
        let requests = self
            .metrics
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        out.push_str("# HELP certd_http_requests_total Requests answered, by route pattern, method and status.\n# TYPE certd_http_requests_total counter\n");
        for ((route, method, status), h) in &requests {
            let _ = writeln!(
                out,
                "certd_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {}",
                esc(route),
                esc(method),
                h.count
            );
        }
        out.push_str("# HELP certd_http_request_duration_seconds Time to answer, by route pattern, method and status.\n# TYPE certd_http_request_duration_seconds histogram\n");
        for ((route, method, status), h) in &requests {
            let labels = format!(
                "route=\"{}\",method=\"{}\",status=\"{status}\"",
                esc(route),
                esc(method)
            );
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "certd_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "certd_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "certd_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "certd_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str("# HELP certd_certificates_issued_total Certificates issued since start, by environment and issuer.\n# TYPE certd_certificates_issued_total counter\n");
        for ((env, issuer), n) in self
            .metrics
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((env, _), _)| visible(env))
        {
            let _ = writeln!(
                out,
                "certd_certificates_issued_total{{environment=\"{}\",issuer=\"{}\"}} {n}",
                esc(env),
                esc(issuer)
            );
        }
        out.push_str("# HELP certd_signatures_discarded_total Certificates signed here that the store then refused as the name's certificate, storing nothing of them (the serial was taken; the name's request or certificate did not allow it), by environment.\n# TYPE certd_signatures_discarded_total counter\n");
        for (env, n) in self
            .metrics
            .discarded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(env, _)| visible(env))
        {
            let _ = writeln!(
                out,
                "certd_signatures_discarded_total{{environment=\"{}\"}} {n}",
                esc(env)
            );
        }
        let now = self.now();
        out.push_str("# HELP certd_crl_entries Revoked certificates listed on the environment's CRL.\n# TYPE certd_crl_entries gauge\n");
        let crls: Vec<_> = self
            .env_list()
            .iter()
            .filter(|e| visible(e.name.as_str()))
            .map(|e| (e.name.to_string(), e.crl_view()))
            .collect();
        for (env, crl) in &crls {
            let _ = writeln!(
                out,
                "certd_crl_entries{{environment=\"{}\"}} {}",
                esc(env),
                crl.meta.entries
            );
        }
        out.push_str("# HELP certd_crl_bytes Size of the environment's CRL, DER.\n# TYPE certd_crl_bytes gauge\n");
        for (env, crl) in &crls {
            let _ = writeln!(
                out,
                "certd_crl_bytes{{environment=\"{}\"}} {}",
                esc(env),
                crl.der().len()
            );
        }
        out.push_str("# HELP certd_crl_age_seconds Time since the environment's CRL was issued (thisUpdate).\n# TYPE certd_crl_age_seconds gauge\n");
        for (env, crl) in &crls {
            let _ = writeln!(
                out,
                "certd_crl_age_seconds{{environment=\"{}\"}} {}",
                esc(env),
                now - crl.meta.this_update
            );
        }
        out.push_str("# HELP certd_crl_next_update_seconds Time until the CRL's nextUpdate.\n# TYPE certd_crl_next_update_seconds gauge\n");
        for (env, crl) in &crls {
            let _ = writeln!(
                out,
                "certd_crl_next_update_seconds{{environment=\"{}\"}} {}",
                esc(env),
                crl.meta.next_update - now
            );
        }
        out.push_str("# HELP certd_store_size_bytes The store's size on disk.\n# TYPE certd_store_size_bytes gauge\n");
        let _ = writeln!(
            out,
            "certd_store_size_bytes {}",
            self.store.size_on_disk().unwrap_or(0)
        );
        if self.store.shared() {
            let applied = self.applied_change();
            let head = self.store.last_event_id().unwrap_or(applied);
            out.push_str("# HELP certd_changes_applied The last change (audit id) of the shared store applied on this node.\n# TYPE certd_changes_applied gauge\n");
            let _ = writeln!(out, "certd_changes_applied {applied}");
            out.push_str("# HELP certd_changes_lag Changes in the shared store not yet applied on this node.\n# TYPE certd_changes_lag gauge\n");
            let _ = writeln!(out, "certd_changes_lag {}", head.saturating_sub(applied));
        }
        out
    }
}
