//! Content negotiation: the `Accept` header (with quality values) against the
//! representations a resource offers, using the `mime` crate. 406 when nothing fits.

use std::str::FromStr;

use actix_web::http::header::{HeaderMap, ACCEPT};
use actix_web::http::StatusCode;

use super::Problem;
use crate::ca::Digest;

/// A representation a resource can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    /// PEM text.
    Pem,
    /// DER bytes.
    Der,
    /// A JSON status object.
    Json,
    /// A fingerprint, with the digest named in the Accept parameter if any.
    Fingerprint(Option<Digest>),
}

/// The media types behind each representation, in the order they are preferred when the
/// client's preferences tie. `pkix` is the DER type of the resource
/// (`application/pkix-cert`, `application/pkix-crl`, `application/pkcs10`).
pub struct Offer {
    types: Vec<(&'static str, Repr)>,
}

/// The longest `Accept` header considered, and the most media ranges in it.
const MAX_ACCEPT_BYTES: usize = 4096;
const MAX_RANGES: usize = 64;

impl Offer {
    /// PEM (`text/plain`, `application/x-pem-file`) and DER under `der_type`.
    pub fn pem_der(der_type: &'static str) -> Self {
        Offer {
            types: vec![
                ("text/plain", Repr::Pem),
                ("application/x-pem-file", Repr::Pem),
                (der_type, Repr::Der),
            ],
        }
    }

    /// Adds the JSON status object.
    pub fn json(mut self) -> Self {
        self.types.push(("application/json", Repr::Json));
        self
    }

    /// Adds fingerprints.
    pub fn fingerprint(mut self) -> Self {
        self.types
            .push(("x-cert/fingerprint", Repr::Fingerprint(None)));
        self
    }

    /// Puts the fingerprint first, so that it wins whenever the client has no explicit
    /// preference (`*/*` or no Accept): `?digest=` asks for a fingerprint.
    pub fn prefer_fingerprint(mut self) -> Self {
        self.types
            .sort_by_key(|(_, r)| !matches!(r, Repr::Fingerprint(_)));
        self
    }

    /// Picks the representation and the media type to answer with.
    pub fn choose(&self, headers: &HeaderMap) -> Result<(Repr, &'static str), Problem> {
        let mut raw = String::new();
        for v in headers.get_all(ACCEPT) {
            let s = v
                .to_str()
                .map_err(|_| bad_accept("the Accept header is not visible ASCII"))?;
            if !raw.is_empty() {
                raw.push(',');
            }
            raw.push_str(s);
            if raw.len() > MAX_ACCEPT_BYTES {
                return Err(bad_accept(&format!(
                    "the Accept header is longer than {MAX_ACCEPT_BYTES} bytes"
                )));
            }
        }
        if raw.trim().is_empty() {
            let (t, r) = self.types[0];
            return Ok((r, t));
        }
        let ranges: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if ranges.len() > MAX_RANGES {
            return Err(bad_accept(&format!(
                "the Accept header has more than {MAX_RANGES} media ranges"
            )));
        }
        // (quality, specificity, position in header) of the best range for each offer.
        let mut best: Option<(u16, u8, usize, usize)> = None; // (q, spec, -pos, offer index)
        for (pos, range) in ranges.iter().enumerate() {
            let Ok(m) = mime::Mime::from_str(range) else {
                continue;
            };
            let q = quality(&m);
            if q == 0 {
                continue;
            }
            for (i, (t, _)) in self.types.iter().enumerate() {
                let Some(spec) = specificity(&m, t) else {
                    continue;
                };
                let key = (q, spec, usize::MAX - pos, usize::MAX - i);
                if best.is_none_or(|b| key > (b.0, b.1, b.2, b.3)) {
                    best = Some(key);
                }
            }
        }
        let (_, _, neg_pos, neg_i) = best.ok_or_else(|| {
            let offered: Vec<&str> = self.types.iter().map(|(t, _)| *t).collect();
            Problem::new(
                StatusCode::NOT_ACCEPTABLE,
                "not-acceptable",
                format!(
                    "no acceptable representation; this resource offers {}",
                    offered.join(", ")
                ),
            )
        })?;
        let (t, repr) = self.types[usize::MAX - neg_i];
        if let Repr::Fingerprint(_) = repr {
            let range = mime::Mime::from_str(ranges[usize::MAX - neg_pos]).ok();
            if let Some(range) = range.filter(|r| r.essence_str() == "x-cert/fingerprint") {
                if let Some(d) = range.get_param("digest") {
                    let digest = Digest::from_str(d.as_str()).map_err(|e| {
                        Problem::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
                    })?;
                    return Ok((Repr::Fingerprint(Some(digest)), t));
                }
            }
        }
        Ok((repr, t))
    }
}

fn bad_accept(detail: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "bad-accept", detail.to_owned())
}

/// `q` as thousandths; 1000 when absent or unparsable values count as 0.
fn quality(m: &mime::Mime) -> u16 {
    match m.get_param("q") {
        None => 1000,
        Some(v) => v
            .as_str()
            .parse::<f32>()
            .ok()
            .filter(|q| (0.0..=1.0).contains(q))
            .map(|q| (q * 1000.0).round() as u16)
            .unwrap_or(0),
    }
}

/// How specifically `range` matches the offered type `t`: 2 exact, 1 `type/*`, 0 `*/*`.
fn specificity(range: &mime::Mime, t: &str) -> Option<u8> {
    let (ty, sub) = t.split_once('/')?;
    let (rt, rs) = (range.type_().as_str(), range.subtype().as_str());
    if rt.eq_ignore_ascii_case(ty) && rs.eq_ignore_ascii_case(sub) {
        Some(2)
    } else if rt.eq_ignore_ascii_case(ty) && rs == "*" {
        Some(1)
    } else if rt == "*" && rs == "*" {
        Some(0)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn pick(accept: &str) -> Result<(Repr, &'static str), u16> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(accept).unwrap());
        Offer::pem_der("application/pkix-cert")
            .json()
            .fingerprint()
            .choose(&h)
            .map_err(|p| p.status().as_u16())
    }

    #[test]
    fn honours_types_wildcards_and_quality() {
        assert_eq!(pick("").unwrap(), (Repr::Pem, "text/plain"));
        assert_eq!(pick("application/json").unwrap().0, Repr::Json);
        assert_eq!(
            pick("application/x-pem-file").unwrap(),
            (Repr::Pem, "application/x-pem-file")
        );
        assert_eq!(pick("application/pkix-cert").unwrap().0, Repr::Der);
        assert_eq!(pick("*/*").unwrap().0, Repr::Pem);
        assert_eq!(
            pick("application/*").unwrap(),
            (Repr::Pem, "application/x-pem-file")
        );
        assert_eq!(
            pick("text/plain;q=0.5, application/json").unwrap().0,
            Repr::Json
        );
        assert_eq!(
            pick("application/json;q=0.1, application/pkix-cert;q=0.9")
                .unwrap()
                .0,
            Repr::Der
        );
        assert_eq!(
            pick("application/json;q=0, */*;q=0.1").unwrap().0,
            Repr::Pem
        );
        assert_eq!(
            pick("x-cert/fingerprint").unwrap().0,
            Repr::Fingerprint(None)
        );
        assert_eq!(
            pick("x-cert/fingerprint;digest=SHA-512").unwrap().0,
            Repr::Fingerprint(Some(Digest::Sha512))
        );
        assert_eq!(pick("x-cert/fingerprint;digest=crc32"), Err(400));
        assert_eq!(pick("image/png"), Err(406));
        assert_eq!(pick("application/json;q=0"), Err(406));
        assert_eq!(pick("garbage"), Err(406));
        assert_eq!(pick(&"text/html, ".repeat(100)), Err(400));
    }
}
