//! Webhooks: every audit event is POSTed as JSON (the `GET /{env}/events` shape) to each
//! URL in `[events] webhooks`.
//!
//! Each webhook has a thread of its own that follows the audit log, so issuance never
//! waits for a webhook: a slow or dead one only falls behind. Each event gets
//! `webhook_attempts` tries with growing pauses, bounded by `webhook_timeout` each, and
//! is then skipped for that webhook (the audit log keeps it). Each POST carries the
//! event's id in `X-Certd-Event-Id`, so that a receiver can drop a repeat.
//!
//! Where nodes share the store, each webhook is fed by one node at a time: the one
//! holding its lease (`webhook <url>`, 6 s, renewed every 2 s), which keeps the last
//! event delivered as the lease's cursor, moved after each delivery and only while the
//! lease is held (fenced). A node that dies mid-delivery leaves the cursor where the
//! next holder resumes: every event at least once. On a store that serves one process
//! the cursor is in memory, starting where the log stood when certd started (events
//! from before a restart are not replayed; `GET /{env}/events?after=` has them).

use std::sync::Arc;
use std::time::Duration;

use super::orders::EventView;
use super::workers::Stop;
use super::App;

impl App {
    /// Starts one delivery thread per configured webhook, until `stop`.
    pub(super) fn spawn_webhooks(
        self: &Arc<Self>,
        stop: Arc<Stop>,
    ) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
        let mut threads = Vec::new();
        let urls = self.config.events.webhooks.clone();
        if urls.is_empty() {
            return Ok(threads);
        }
        let start = match self.store.last_event_id() {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "webhooks: cannot read the audit log; not started");
                return Ok(threads);
            }
        };
        let timeout = Duration::from_secs(self.config.events.webhook_timeout.as_secs() as u64);
        let attempts = self.config.events.webhook_attempts;
        for url in urls {
            let app = Arc::clone(self);
            let client = match crate::issuer::http_client(timeout, timeout).build() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(%url, error = %e, "webhook client");
                    continue;
                }
            };
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("certd-webhook".into())
                    .spawn(move || app.feed_webhook(&client, &url, start, attempts, &stop))?,
            );
        }
        Ok(threads)
    }
}

impl App {
    /// Feeds one webhook while this node holds its lease: the events after the lease's
    /// cursor, each delivered (or given up on) before the cursor moves past it, so a
    /// node that dies mid-delivery leaves the cursor where the next holder resumes
    /// (that event is delivered again: at least once).
    fn feed_webhook(
        &self,
        client: &reqwest::blocking::Client,
        url: &str,
        start: u64,
        attempts: u32,
        stop: &Stop,
    ) {
        let name = format!("webhook {url}");
        let node = self.feed.holder();
        // Where this node got to: the cursor of a store that keeps none.
        let mut cursor = start;
        let mut held = false;
        while !stop.stopped() {
            let lease = match self.store.take_lease(&name, &node, LEASE_MS, cursor) {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    held = false;
                    stop.sleep(Duration::from_secs(1));
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, %url, "webhook: its lease");
                    stop.sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if !held {
                held = true;
                tracing::info!(%url, after = lease.cursor, "feeding the webhook");
            }
            cursor = lease.cursor;
            let events = match self.store.audit(cursor, 100) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "webhook: audit log");
                    Vec::new()
                }
            };
            if events.is_empty() {
                stop.sleep(Duration::from_millis(200));
                continue;
            }
            let renewed = std::time::Instant::now();
            for e in &events {
                if stop.stopped() {
                    return;
                }
                deliver(client, url, &EventView::from(e), attempts, stop);
                match self.store.advance_lease(&name, &node, e.id) {
                    Ok(true) => cursor = e.id,
                    // Lost (expired while delivering, or taken over): the holder goes on
                    // from the stored cursor.
                    Ok(false) | Err(_) => break,
                }
                if renewed.elapsed() > RENEW {
                    // Back to the top: the lease is renewed before the next event.
                    break;
                }
            }
        }
    }
}

/// How long a webhook's lease lasts without renewal: another node takes it over this
/// long after its holder died.
const LEASE_MS: i64 = 6_000;

/// A holder renews its lease at least this often.
const RENEW: Duration = Duration::from_secs(2);

fn deliver(
    client: &reqwest::blocking::Client,
    url: &str,
    event: &EventView,
    attempts: u32,
    stop: &Stop,
) {
    for attempt in 0..attempts {
        if attempt > 0 && stop.sleep(Duration::from_millis(500 << (attempt - 1).min(6))) {
            return;
        }
        let sent = client
            .post(url)
            .header("X-Certd-Event-Id", event.id.to_string())
            .json(event)
            .send();
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                tracing::warn!(%url, id = event.id, status = %r.status(), attempt, "webhook refused the event")
            }
            Err(e) => {
                tracing::warn!(%url, id = event.id, error = %e, attempt, "webhook unreachable")
            }
        }
    }
    tracing::warn!(%url, id = event.id, "webhook: event skipped after {attempts} attempts");
}
