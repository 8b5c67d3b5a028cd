//! Any query string for a listing (glob, regex, state, limit, after): never a panic, and
//! a compiled query answers for any name quickly.
#![no_main]
use certd::app::ListQuery;
use certd::config::LimitsConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let (query, pattern) = s.split_once('\n').unwrap_or((&s, "*"));
    let Ok(pairs) = serde_urlencoded_pairs(query) else { return };
    if let Ok(q) = ListQuery::parse(&pairs, Some(pattern), &LimitsConfig::default()) {
        for name in ["a", "web-01.example.com", &"a".repeat(255)] {
            let _ = q.matches(name, "signed");
        }
    }
});

fn serde_urlencoded_pairs(q: &str) -> Result<Vec<(String, String)>, ()> {
    let mut out = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}
