//! Connections between requests, bounded. actix-http times a connection's request head
//! only for its first request and never times a response's write, so a client could
//! hold a connection (and a file descriptor) for good. It could send one byte of a
//! second request and stop, trickle a head a byte at a time, or ask for answers and
//! never read them.
//!
//! So each connection is watched from its handshake to its end. A request is counted
//! as being worked on from when it reaches the service until it is answered
//! ([`busy`]), and its answer as being handed over until its body has all gone to
//! actix ([`Sending`]). Then, with `limit` being `keep_alive` plus `request_timeout`:
//! - while a request is worked on, the connection is never cut (its body has
//!   `body_timeout`; a slow store is certd's doing);
//! - while a body certd produces piece by piece (a streamed listing) is handed over,
//!   it is cut only when its socket holds data the client has not taken for `limit`;
//! - otherwise it is cut once no request has come for `limit` and the socket has sent
//!   nothing for as long: the next request's head is late, or the answer is not being
//!   taken. A download still moving keeps it; actix's own keep-alive counts from when
//!   the answer was handed over, so a client that keeps to actix's timers is never cut
//!   by this.
//!
//! What the socket has sent and still holds is asked of the kernel (`TCP_INFO`,
//! `SIOCOUTQ`) once per sweep. The connection is closed with `shutdown(2)` on a
//! duplicate of its descriptor, so a number reused by a newer connection is never
//! touched; actix then sees the connection end and drops it. A connection whose
//! descriptor cannot be duplicated is shut down at once rather than served unwatched.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::Error;

/// The connections being watched, and the thread that sweeps them.
pub struct Watchdog {
    limit: Duration,
    epoch: Instant,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Watch>>>,
}

/// One connection: a duplicate of its socket, whether a request of it is being worked
/// on or its answer's body is being handed over, and since when neither.
struct Watch {
    socket: OwnedFd,
    /// Requests being worked on (from the service call to the answer).
    handling: AtomicU32,
    /// Answers whose body has not all been handed to actix yet.
    sending: AtomicU32,
    /// Phases begun and ended, ever: the sweep's second look sees any that came and
    /// went between its looks.
    changes: AtomicU64,
    /// When the last of either ended (or the connection was opened): milliseconds
    /// after the watchdog's epoch.
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

    /// Watches the connection on `socket` until the returned value is dropped. When its
    /// descriptor cannot be duplicated (out of descriptors) the connection is shut down
    /// instead: none is served unwatched.
    pub fn watch(self: &Arc<Self>, socket: BorrowedFd<'_>) -> Option<Watched> {
        let dup = match socket.try_clone_to_owned() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch a connection; closing it");
                kernel::shut(socket.as_raw_fd());
                return None;
            }
        };
        let watch = Arc::new(Watch {
            socket: dup,
            handling: AtomicU32::new(0),
            sending: AtomicU32::new(0),
            changes: AtomicU64::new(0),
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

    /// Closes every connection that stalled past its bound.
    fn sweep(&self) {
        let now = self.now();
        let limit = self.limit.as_millis() as u64;
        let due: Vec<(Arc<Watch>, u64)> = self
            .lock()
            .values()
            .filter(|w| w.handling.load(Ordering::Acquire) == 0)
            .filter(|w| {
                w.sending.load(Ordering::Acquire) > 0
                    || now.saturating_sub(w.since.load(Ordering::Acquire)) > limit
            })
            .map(|w| (w.clone(), w.changes.load(Ordering::Acquire)))
            .collect();
        for (w, changes) in due {
            let fd = w.socket.as_raw_fd();
            // What waits to be sent before how long ago anything was: a piece written
            // between the two asks shows in the second.
            let unsent = kernel::unsent(fd);
            let Some(sent_ago) = kernel::since_sent_ms(fd).map(u64::from) else {
                continue;
            };
            let stalled = if w.sending.load(Ordering::Acquire) > 0 {
                // A body certd is still producing (a streamed listing): only a client
                // that takes none of it stalls it.
                sent_ago > limit && unsent.is_some_and(|n| n > 0)
            } else {
                // Nothing sent for `limit`, and no request for as long: the next
                // head is late, or the answer is not being taken.
                sent_ago > limit
            };
            // Looked at again: a request or an answer's end may have come meanwhile.
            if stalled
                && w.handling.load(Ordering::Acquire) == 0
                && w.changes.load(Ordering::Acquire) == changes
            {
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

/// Counts a request as worked on from when it reaches the service until it is
/// answered, and its answer as being sent until its body has all been handed to actix
/// (or dropped); the wait for the next request starts then.
pub async fn busy(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<Sending>, Error> {
    let watch = req
        .request()
        .conn_data::<Watched>()
        .map(|w| (w.dog.clone(), w.watch.clone()));
    let handling = watch
        .as_ref()
        .map(|(dog, watch)| Phase::enter(dog, watch, false));
    let res = next.call(req).await?;
    let sending = watch
        .as_ref()
        .map(|(dog, watch)| Phase::enter(dog, watch, true));
    drop(handling);
    Ok(res.map_body(|_, body| Sending {
        body: body.boxed(),
        phase: sending,
    }))
}

/// A request being worked on, or an answer being handed over; ended when dropped.
struct Phase {
    dog: Arc<Watchdog>,
    watch: Arc<Watch>,
    sending: bool,
}

impl Phase {
    fn enter(dog: &Arc<Watchdog>, watch: &Arc<Watch>, sending: bool) -> Phase {
        if sending {
            watch.sending.fetch_add(1, Ordering::AcqRel);
        } else {
            watch.handling.fetch_add(1, Ordering::AcqRel);
        }
        watch.changes.fetch_add(1, Ordering::AcqRel);
        Phase {
            dog: dog.clone(),
            watch: watch.clone(),
            sending,
        }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        self.watch.since.store(self.dog.now(), Ordering::Release);
        let count = if self.sending {
            &self.watch.sending
        } else {
            &self.watch.handling
        };
        count.fetch_sub(1, Ordering::AcqRel);
        self.watch.changes.fetch_add(1, Ordering::AcqRel);
    }
}

/// An answer's body, counted as being sent until it ends.
pub struct Sending {
    body: BoxBody,
    phase: Option<Phase>,
}

impl MessageBody for Sending {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.body).poll_next(cx);
        if let Poll::Ready(None) = next {
            this.phase = None;
        }
        next
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        // A body in one piece is handed over whole, here.
        let Sending { body, phase } = self;
        match body.try_into_bytes() {
            Ok(bytes) => Ok(bytes),
            Err(body) => Err(Sending { body, phase }),
        }
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
