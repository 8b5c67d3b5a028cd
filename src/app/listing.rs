//! Listings: certificates, requests and statuses filtered by glob, regex and state, in
//! name order, paged with `limit` and `after`. Answered from the stored summaries; no
//! certificate is parsed.

use regex::Regex;

use super::status::{of_certificate, of_request, StatusObject};
use super::{App, AppError};
use crate::ca::Certname;
use crate::config::LimitsConfig;
use crate::store::{CertState, StoreError};

/// A parsed listing query.
#[derive(Debug, Clone)]
pub struct ListQuery {
    glob: Option<String>,
    regex: Option<Regex>,
    state: Option<CertState>,
    /// Page size.
    pub limit: usize,
    /// Names after this one.
    pub after: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// The items, in name order.
    pub items: Vec<StatusObject>,
    /// When more follow: the `after` value for the next page.
    pub next_after: Option<String>,
}

fn bad(code: &'static str, detail: String) -> AppError {
    AppError::BadRequest { code, detail }
}

/// The states a listing filters on (`error` requests are listed, not filtered for).
const STATES: [CertState; 4] = [
    CertState::Requested,
    CertState::Signed,
    CertState::Revoked,
    CertState::Invalid,
];

impl ListQuery {
    /// Parses query parameters: `certname` (glob with `*` and `?`), `regex` (whole-name
    /// match), `state` or `restrict` (`waiting` = `requested`), `limit`, `after`. An
    /// unknown or repeated parameter is an error. `pattern` is the path's glob, if any.
    pub fn parse(
        params: &[(String, String)],
        pattern: Option<&str>,
        limits: &LimitsConfig,
    ) -> Result<ListQuery, AppError> {
        let mut q = ListQuery {
            glob: None,
            regex: None,
            state: None,
            limit: limits.max_page,
            after: None,
        };
        let mut seen = std::collections::HashSet::new();
        let check_len = |what: &str, v: &str| {
            if v.len() > limits.max_pattern_bytes {
                Err(bad(
                    "pattern-too-long",
                    format!(
                        "{what} is {} bytes; at most {} are allowed",
                        v.len(),
                        limits.max_pattern_bytes
                    ),
                ))
            } else {
                Ok(())
            }
        };
        if let Some(p) = pattern.filter(|p| *p != "*" && !p.is_empty()) {
            check_len("the name pattern", p)?;
            q.glob = Some(p.to_owned());
        }
        for (k, v) in params {
            if !seen.insert(k.as_str()) {
                return Err(bad(
                    "repeated-parameter",
                    format!("parameter {k:?} is given more than once"),
                ));
            }
            match k.as_str() {
                "certname" => {
                    check_len("certname", v)?;
                    if q.glob.is_some() {
                        return Err(bad(
                            "repeated-parameter",
                            "give the name pattern either in the path or as certname=, not both"
                                .into(),
                        ));
                    }
                    q.glob = Some(v.clone());
                }
                "regex" => {
                    check_len("regex", v)?;
                    let re = regex::RegexBuilder::new(&format!("^(?:{v})$"))
                        .size_limit(1 << 20)
                        .dfa_size_limit(1 << 20)
                        .nest_limit(32)
                        .build()
                        .map_err(|e| {
                            bad(
                                "invalid-regex",
                                format!(
                                    "regex does not compile: {}",
                                    e.to_string().lines().last().unwrap_or("")
                                ),
                            )
                        })?;
                    q.regex = Some(re);
                }
                "state" | "restrict" => {
                    let s = if v == "waiting" {
                        "requested"
                    } else {
                        v.as_str()
                    };
                    let state = STATES.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
                        bad("invalid-state", format!("state {:?} is not one of requested (waiting), signed, revoked, invalid", v.chars().take(40).collect::<String>()))
                    })?;
                    if q.state.is_some_and(|prev| prev != state) {
                        return Err(bad(
                            "repeated-parameter",
                            "state and restrict disagree".into(),
                        ));
                    }
                    q.state = Some(state);
                }
                "limit" => {
                    q.limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=limits.max_page).contains(n))
                        .ok_or_else(|| {
                            bad(
                                "invalid-limit",
                                format!(
                                    "limit must be a whole number from 1 to {}",
                                    limits.max_page
                                ),
                            )
                        })?;
                }
                "after" => {
                    check_len("after", v)?;
                    q.after = Some(v.clone());
                }
                other => {
                    return Err(bad("unknown-parameter", format!("unknown query parameter {:?}; use certname, regex, state, restrict, limit or after", other.chars().take(40).collect::<String>())));
                }
            }
        }
        Ok(q)
    }

    /// Whether a name in `state` passes the filters.
    pub fn matches(&self, name: &str, state: CertState) -> bool {
        self.state.is_none_or(|s| s == state)
            && self
                .glob
                .as_deref()
                .is_none_or(|g| glob_match(g.as_bytes(), name.as_bytes()))
            && self.regex.as_ref().is_none_or(|r| r.is_match(name))
    }
}

/// Glob match with `*` (any run) and `?` (one byte); everything else literal. Linear
/// backtracking over the last `*`, so O(pattern × name) at worst.
pub(crate) fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Scans a name-ordered source from `after`, keeping what `keep` accepts, until `want`
/// items are kept or the source ends.
fn scan<T>(
    mut fetch: impl FnMut(Option<&str>, usize) -> Result<Vec<(Certname, T)>, StoreError>,
    keep: impl Fn(&Certname, &T) -> bool,
    after: Option<&str>,
    want: usize,
) -> Result<Vec<(Certname, T)>, StoreError> {
    const BATCH: usize = 512;
    let mut out = Vec::new();
    let mut cursor = after.map(str::to_owned);
    loop {
        let batch = fetch(cursor.as_deref(), BATCH)?;
        let full = batch.len() == BATCH;
        for (name, item) in batch {
            cursor = Some(name.to_string());
            if keep(&name, &item) {
                out.push((name, item));
                if out.len() == want {
                    return Ok(out);
                }
            }
        }
        if !full {
            return Ok(out);
        }
    }
}

fn page(mut items: Vec<StatusObject>, limit: usize, more: bool) -> Page {
    let more = more || items.len() > limit;
    items.truncate(limit);
    let next_after = if more {
        items.last().map(|i| i.name.clone())
    } else {
        None
    };
    Page { items, next_after }
}

impl App {
    /// A listed certificate's DER, for a fingerprint under a digest not stored.
    fn der_of(
        &self,
        env: &crate::ca::EnvName,
        name: &Certname,
    ) -> Result<Option<Vec<u8>>, AppError> {
        Ok(self.store.certificate(env, name)?.map(|c| c.der))
    }

    /// `GET /{env}/certificate/`: certificates (signed and revoked).
    pub fn list_certificates(&self, raw_env: &str, q: &ListQuery) -> Result<Page, AppError> {
        let env = self.env_ca(raw_env)?;
        let digest = self.config.ca.fingerprint_digest;
        let found = scan(
            |a, n| self.store.certificates(&env.name, a, n),
            |name, c| {
                q.matches(
                    name.as_str(),
                    CertState::of_certificate(c.revocation.is_some()),
                )
            },
            q.after.as_deref(),
            q.limit + 1,
        )?;
        let items = found
            .into_iter()
            .map(|(n, c)| of_certificate(&env.name, &n, c, digest, || self.der_of(&env.name, &n)))
            .collect::<Result<_, _>>()?;
        Ok(page(items, q.limit, false))
    }

    /// `GET /{env}/certificate_requests/`: requests (pending and invalid).
    pub fn list_requests(&self, raw_env: &str, q: &ListQuery) -> Result<Page, AppError> {
        let env = self.env_ca(raw_env)?;
        let digest = self.config.ca.fingerprint_digest;
        let found = scan(
            |a, n| self.store.requests(&env.name, a, n),
            |name, r| q.matches(name.as_str(), CertState::of_request(&r.state)),
            q.after.as_deref(),
            q.limit + 1,
        )?;
        let items = found
            .iter()
            .map(|(n, r)| of_request(&env.name, n, r, digest))
            .collect();
        Ok(page(items, q.limit, false))
    }

    /// `GET /{env}/certificate_statuses/{pattern}`: one status per name, the
    /// certificate's when there is one, else the request's.
    pub fn list_statuses(&self, raw_env: &str, q: &ListQuery) -> Result<Page, AppError> {
        let env = self.env_ca(raw_env)?;
        let digest = self.config.ca.fingerprint_digest;
        let want = q.limit + 1;
        let certs = scan(
            |a, n| self.store.certificates(&env.name, a, n),
            |name, c| {
                q.matches(
                    name.as_str(),
                    CertState::of_certificate(c.revocation.is_some()),
                )
            },
            q.after.as_deref(),
            want,
        )?;
        let reqs = scan(
            |a, n| self.store.requests(&env.name, a, n),
            |name, r| q.matches(name.as_str(), CertState::of_request(&r.state)),
            q.after.as_deref(),
            want,
        )?;
        // Either source may hold more than it returned; the merged page is then only
        // complete up to the smaller of the two last names.
        let last_if_full =
            |len: usize, last: Option<&Certname>| if len == want { last.cloned() } else { None };
        let horizon = [
            last_if_full(certs.len(), certs.last().map(|(n, _)| n)),
            last_if_full(reqs.len(), reqs.last().map(|(n, _)| n)),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut merged: Vec<StatusObject> = Vec::with_capacity(want * 2);
        let (mut ci, mut ri) = (certs.into_iter().peekable(), reqs.into_iter().peekable());
        loop {
            let take_cert = match (ci.peek(), ri.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((c, _)), Some((r, _))) => c <= r,
            };
            let obj = if take_cert {
                let Some((n, c)) = ci.next() else { break };
                if ri.peek().is_some_and(|(r, _)| *r == n) {
                    ri.next(); // the certificate's status wins over a re-submitted request
                }
                of_certificate(&env.name, &n, c, digest, || self.der_of(&env.name, &n))?
            } else {
                let Some((n, r)) = ri.next() else { break };
                of_request(&env.name, &n, &r, digest)
            };
            if horizon
                .as_ref()
                .is_some_and(|h| obj.name.as_str() > h.as_str())
            {
                break;
            }
            merged.push(obj);
        }
        Ok(page(merged, q.limit, horizon.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs_match_like_shells() {
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"*.example.com", b"a.example.com"));
        assert!(!glob_match(b"*.example.com", b"example.com"));
        assert!(glob_match(b"web-??", b"web-01"));
        assert!(!glob_match(b"web-??", b"web-1"));
        assert!(glob_match(b"a*b*c", b"axxbyyc"));
        assert!(!glob_match(b"a*b*c", b"axxbyy"));
    }

    /// A regex built from the glob is the reference.
    fn reference(pat: &str, name: &str) -> bool {
        let re: String = pat
            .chars()
            .map(|c| match c {
                '*' => ".*".to_owned(),
                '?' => ".".to_owned(),
                c => regex::escape(&c.to_string()),
            })
            .collect();
        Regex::new(&format!("^(?s:{re})$")).unwrap().is_match(name)
    }

    proptest! {
        #[test]
        fn glob_agrees_with_a_regex(pat in "[ab*?]{0,8}", name in "[ab]{0,10}") {
            prop_assert_eq!(glob_match(pat.as_bytes(), name.as_bytes()), reference(&pat, &name));
        }
    }

    #[test]
    fn query_parsing_refuses_bad_parameters() {
        let limits = LimitsConfig::default();
        let p = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let code = |pairs: &[(&str, &str)]| match ListQuery::parse(&p(pairs), None, &limits) {
            Err(AppError::BadRequest { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(&[("regex", "(")]), "invalid-regex");
        assert_eq!(code(&[("regex", &"a".repeat(300))]), "pattern-too-long");
        assert_eq!(code(&[("state", "bogus")]), "invalid-state");
        assert_eq!(code(&[("limit", "0")]), "invalid-limit");
        assert_eq!(code(&[("limit", "x")]), "invalid-limit");
        assert_eq!(code(&[("limit", "1001")]), "invalid-limit");
        assert_eq!(code(&[("foo", "1")]), "unknown-parameter");
        assert_eq!(
            code(&[("after", "a"), ("after", "b")]),
            "repeated-parameter"
        );
        let q = ListQuery::parse(
            &p(&[("restrict", "waiting"), ("regex", "web-[0-9]+")]),
            Some("*"),
            &limits,
        )
        .unwrap();
        assert!(q.matches("web-12", CertState::Requested));
        assert!(!q.matches("web-12x", CertState::Requested));
        assert!(!q.matches("web-12", CertState::Signed));
    }
}
