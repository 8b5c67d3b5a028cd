//! Webhooks: every audit event is POSTed as JSON (the `GET /{env}/events` shape) to each
//! URL in `[events] webhooks`.
//!
//! Each webhook has a thread of its own that follows the audit log from where it stood
//! when certd started, so issuance never waits for a webhook: a slow or dead one only
//! falls behind. Each event gets `webhook_attempts` tries with growing pauses, bounded by
//! `webhook_timeout` each, and is then skipped for that webhook (the audit log keeps it).
//! Events from before a restart are not replayed; `GET /{env}/events?after=` has them.

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
                    .spawn(move || {
                        let mut cursor = start;
                        while !stop.stopped() {
                            let events = match app.store.audit(cursor, 100) {
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
                            for e in &events {
                                if stop.stopped() {
                                    return;
                                }
                                deliver(&client, &url, &EventView::from(e), attempts, &stop);
                                cursor = e.id;
                            }
                        }
                    })?,
            );
        }
        Ok(threads)
    }
}

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
        match client.post(url).json(event).send() {
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
