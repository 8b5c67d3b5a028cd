//! Connections between requests, bounded. actix-http times a connection's request head
//! only for its first request and never times a response's write, so a client could
//! hold a connection (and a file descriptor) for good. It could send one byte of a
//! second request and stop, trickle a head a byte at a time, or ask for answers and
//! never read them.
//!
//! So each connection is watched from its handshake to its end. While certd is not
//! working on one of its requests ([`busy`]), a connection closes if either holds:
//! - it has gone `limit` since it was opened, or since its last request was answered,
//!   and nothing waits in its socket to be sent: its next request's head is late;
//! - an answer waits in its socket, and none of it has been taken for `limit`.
//!
//! `limit` is `keep_alive` plus `request_timeout`, so a client that keeps to actix's
//! timers is never cut by this. A request being worked on (its body read within
//! `body_timeout`, a slow store) is not counted. What the kernel has sent and what it
//! still holds is asked of the kernel (`TCP_INFO`, `SIOCOUTQ`) once per sweep. The
//! connection is closed with `shutdown(2)`, on a duplicate of its descriptor, so a
//! number reused by a newer connection is never touched. actix then sees the
//! connection end and drops it.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::Error;

/// The connections being watched, and the thread that sweeps them.
pub struct Watchdog {
    limit: Duration,
    epoch: Instant,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Watch>>>,
}

/// One connection: a duplicate of its socket, whether a request of it is being worked
/// on, and since when it has been waiting for its next one.
struct Watch {
    socket: OwnedFd,
    busy: AtomicU32,
    /// Milliseconds after the watchdog's epoch.
    since: AtomicU64,
}

/// A connection's place in the watch, in its connection data; leaves the watch when the
/// connection ends.
pub struct Watched {
    dog: Arc<Watchdog>,
    id: u64,
    watch: Arc<Watch>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.dog.lock().remove(&self.id);
    }
}

impl Watchdog {
    /// Starts the sweeping thread; it ends once the watchdog is dropped.
    pub fn start(limit: Duration) -> Arc<Watchdog> {
        let dog = Arc::new(Watchdog {
            limit,
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&dog);
        let period = (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let spawned = std::thread::Builder::new()
            .name("certd-conn-watch".into())
            .spawn(move || sweep_while(&weak, period));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the connection watch: stalled connections stay open");
        }
        dog
    }

    /// Watches the connection on `socket` until the returned value is dropped; None
    /// (logged) when its descriptor cannot be duplicated.
    pub fn watch(self: &Arc<Self>, socket: BorrowedFd<'_>) -> Option<Watched> {
        let socket = match socket.try_clone_to_owned() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch a connection");
                return None;
            }
        };
        let watch = Arc::new(Watch {
            socket,
            busy: AtomicU32::new(0),
            since: AtomicU64::new(self.now()),
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, watch.clone());
        Some(Watched {
            dog: self.clone(),
            id,
            watch,
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Watch>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every idle connection past its bound.
    fn sweep(&self) {
        let now = self.now();
        let limit = self.limit.as_millis() as u64;
        let due: Vec<Arc<Watch>> = self
            .lock()
            .values()
            .filter(|w| {
                w.busy.load(Ordering::Acquire) == 0
                    && now.saturating_sub(w.since.load(Ordering::Acquire)) > limit
            })
            .cloned()
            .collect();
        for w in due {
            let fd = w.socket.as_raw_fd();
            let stalled = match kernel::unsent(fd) {
                Some(0) => true,
                // Something waits to be sent: closed once none has gone for `limit`.
                Some(_) => kernel::since_sent_ms(fd).is_some_and(|ms| u64::from(ms) > limit),
                None => false,
            };
            // Asked again: a request may have started meanwhile.
            if stalled && w.busy.load(Ordering::Acquire) == 0 {
                tracing::debug!(fd, "closing a connection that stalled between requests");
                kernel::shut(fd);
            }
        }
    }
}

fn sweep_while(dog: &Weak<Watchdog>, period: Duration) {
    loop {
        std::thread::sleep(period);
        match dog.upgrade() {
            Some(d) => d.sweep(),
            None => return,
        }
    }
}

/// Counts the connection's requests as worked on from when they reach the service until
/// they are answered; the wait for the next request starts then.
pub async fn busy(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let watched = req.request().conn_data::<Watched>().map(|w| Busy {
        dog: w.dog.clone(),
        watch: w.watch.clone(),
    });
    if let Some(b) = &watched {
        b.watch.busy.fetch_add(1, Ordering::AcqRel);
    }
    let res = next.call(req).await;
    drop(watched);
    res
}

/// A request being worked on; ended when dropped (answered, or its future dropped).
struct Busy {
    dog: Arc<Watchdog>,
    watch: Arc<Watch>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.watch.since.store(self.dog.now(), Ordering::Release);
        self.watch.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Raises the process's open-file limit to its hard limit: each connection takes two
/// descriptors (its socket and the watch's duplicate), and the usual soft limit (1,024)
/// is far below `max_connections`. The limit reached is logged.
pub fn raise_descriptor_limit() {
    match kernel::raise_nofile() {
        Some((soft, hard)) => tracing::info!(soft, hard, "open files allowed"),
        None => tracing::warn!("cannot read or raise the open-file limit"),
    }
}

/// What is asked of the kernel. Each socket call is on a descriptor the caller owns (a
/// duplicate it holds), each with buffers of the size the call defines.
#[allow(unsafe_code)]
mod kernel {
    use std::os::fd::RawFd;

    /// Bytes in the socket's send queue (sent and not acknowledged, or not sent yet).
    pub(super) fn unsent(fd: RawFd) -> Option<i32> {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one c_int to the pointer given.
        let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
        (r == 0).then_some(n)
    }

    /// Milliseconds since the socket last sent data.
    pub(super) fn since_sent_ms(fd: RawFd) -> Option<u32> {
        // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes to `info` and sets `len`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                &mut info as *mut libc::tcp_info as *mut libc::c_void,
                &mut len,
            )
        };
        (r == 0).then_some(info.tcpi_last_data_sent)
    }

    /// Sets the soft open-file limit to the hard one; (soft, hard) as they are then.
    pub(super) fn raise_nofile() -> Option<(libc::rlim_t, libc::rlim_t)> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit to the pointer given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit reads one rlimit from the pointer given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim = raised;
            }
        }
        Some((lim.rlim_cur, lim.rlim_max))
    }

    /// Shuts the socket down both ways: the connection's reads end and its writes fail.
    pub(super) fn shut(fd: RawFd) {
        // SAFETY: shutdown takes a descriptor and a constant; no memory is passed.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
}
