//! Certnames, environment names, digests, reasons and durations from any string: never
//! a panic; an accepted certname holds only the allowed characters.
#![no_main]
use certd::ca::{Certname, Digest, EnvName, RevocationReason};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(n) = Certname::parse(&s) {
        assert!(n.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)));
        assert!(!n.as_str().contains(".."));
    }
    let _ = EnvName::parse(&s);
    let _ = s.parse::<Digest>();
    let _ = RevocationReason::parse(&s);
    let _ = certd::config::Duration::parse(&s);
});
