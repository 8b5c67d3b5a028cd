//! The background workers' lifecycle: every long-lived thread (CRL maintenance, the order
//! worker, the issuer prober, one per webhook) is started by [`App::spawn_workers`],
//! watches one stop signal, and is joined by [`Workers::stop`] at shutdown, before the
//! final flush.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::App;

/// The stop signal the workers watch.
#[derive(Default)]
pub(crate) struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Whether stop was asked.
    pub(crate) fn stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps for `d` or until stop is asked; true when it was.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let g = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = self
            .wake
            .wait_timeout_while(g, d, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *g
    }

    fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }
}

/// The running workers; [`Workers::stop`] ends them.
pub struct Workers {
    app: Arc<App>,
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Signals every worker to stop and waits for them (and for order calls under way)
    /// until `deadline`; a thread still inside a call to a back end then is left to end
    /// on its own (its work is not acknowledged to anyone, and the order's lease lets
    /// the next start take it up). Returns how many threads were still running.
    pub fn stop(self, deadline: Duration) -> usize {
        let until = Instant::now() + deadline;
        self.stop.set();
        self.app.wake_orders();
        let mut left = 0;
        for t in self.threads {
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                left += 1;
            }
        }
        while self.app.orders_under_way() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        left + self.app.orders_under_way()
    }
}

impl App {
    /// Starts every background worker.
    pub fn spawn_workers(self: &Arc<Self>) -> std::io::Result<Workers> {
        let stop = Arc::new(Stop::default());
        let mut threads = Vec::new();
        threads.push(self.spawn_maintenance(stop.clone())?);
        threads.extend(self.spawn_order_worker(stop.clone())?);
        threads.extend(self.spawn_webhooks(stop.clone())?);
        if self.store.shared() {
            threads.push(self.spawn_feed(stop.clone())?);
        }
        Ok(Workers {
            app: Arc::clone(self),
            stop,
            threads,
        })
    }
}
