//! A CRL as served: its DER, shared with every response and the next rebuild; its PEM,
//! made when first asked for and dropped when nobody has asked for a while; its
//! validators.

use bytes::Bytes;

use crate::ca::UnixTime;
use crate::store::CrlRecord;

/// How long a CRL's PEM is kept after it was last served: a CRL fetched as PEM is
/// usually fetched again soon (every agent's run), but one fetched once need not hold
/// 6.7 MB (at 100,000 entries) while nobody asks; made again, it costs one encoding.
pub const PEM_KEPT_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The PEM label of a CRL.
const PEM_LABEL: &str = "X509 CRL";

/// A CRL ready to serve: DER, PEM and the validators derived from it.
#[derive(Debug)]
pub struct CrlView {
    /// Its number, dates and count; `meta.der` is empty (the DER is [`CrlView::der`]).
    pub meta: CrlRecord,
    /// The CRL, DER.
    der: Bytes,
    /// PEM encoding, made on first use (a 100,000-entry CRL is 6.7 MB of PEM, and most
    /// re-issues are never fetched as PEM before the next one), and dropped once unused
    /// for [`PEM_KEPT_IDLE`] ([`CrlView::forget_idle_pem`]).
    pem: std::sync::Mutex<Pem>,
    /// Strong entity tag: the CRL number, which changes with every rebuild.
    pub etag: String,
}

/// A CRL's PEM, if made, and when it was last asked for.
#[derive(Debug)]
struct Pem {
    pem: Option<Bytes>,
    used: std::time::Instant,
}

impl CrlView {
    /// The view of `record`, whose DER it takes.
    pub(super) fn new(mut record: CrlRecord) -> Self {
        let der = Bytes::from(std::mem::take(&mut record.der));
        CrlView::sharing(record, der)
    }

    /// The view of `meta` (whose own `der` is dropped) serving `der`, shared.
    pub(super) fn sharing(mut meta: CrlRecord, der: Bytes) -> Self {
        meta.der = Vec::new();
        let etag = format!("crl-{}", meta.number);
        CrlView {
            meta,
            der,
            pem: std::sync::Mutex::new(Pem {
                pem: None,
                used: std::time::Instant::now(),
            }),
            etag,
        }
    }

    /// The DER encoding (a clone shares the buffer).
    pub fn der(&self) -> &Bytes {
        &self.der
    }

    /// The PEM encoding, shared with the view (made here if it is not held: concurrent
    /// callers wait for one encoding). A response still sending a PEM that was dropped
    /// keeps its own, so one made meanwhile is a second copy for that while.
    pub fn pem(&self) -> Bytes {
        let mut held = self.pem.lock().unwrap_or_else(|p| p.into_inner());
        held.used = std::time::Instant::now();
        held.pem
            .get_or_insert_with(|| Bytes::from(crate::ca::pem_encode(PEM_LABEL, &self.der)))
            .clone()
    }

    /// The length of the PEM encoding, without making it.
    pub fn pem_len(&self) -> u64 {
        crate::ca::pem_len(PEM_LABEL, &self.der) as u64
    }

    /// Drops the PEM if it was last asked for `idle` or more before `now` (responses
    /// still being sent keep their share); whether it did.
    pub(super) fn forget_idle_pem(
        &self,
        now: std::time::Instant,
        idle: std::time::Duration,
    ) -> bool {
        let mut held = self.pem.lock().unwrap_or_else(|p| p.into_inner());
        if held.pem.is_some() && now.saturating_duration_since(held.used) >= idle {
            held.pem = None;
            return true;
        }
        false
    }

    /// When it was issued (its `thisUpdate`), for `Last-Modified`.
    pub fn last_modified(&self) -> UnixTime {
        self.meta.this_update
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_unused_for_a_while_is_dropped_and_made_again_alike() {
        let view = CrlView::new(CrlRecord {
            number: 7,
            this_update: 1,
            next_update: 2,
            entries: 0,
            der: vec![0x30, 0x03, 0x02, 0x01, 0x07],
        });
        let first = view.pem();
        assert!(first.starts_with(b"-----BEGIN X509 CRL-----"));
        assert_eq!(view.pem_len(), first.len() as u64);
        let now = std::time::Instant::now();
        assert!(
            !view.forget_idle_pem(now, PEM_KEPT_IDLE),
            "dropped while in use"
        );
        let later = now + PEM_KEPT_IDLE + std::time::Duration::from_secs(1);
        assert!(view.forget_idle_pem(later, PEM_KEPT_IDLE));
        assert!(!view.forget_idle_pem(later, PEM_KEPT_IDLE), "nothing left");
        // A response still being sent keeps its share; the next is made alike.
        assert_eq!(view.pem(), first);
        assert!(!view.forget_idle_pem(later - PEM_KEPT_IDLE, PEM_KEPT_IDLE));
    }
}
