//! `/metrics`: Prometheus text with request counters and histograms by route pattern,
//! issuance per environment and issuer, CRL size and age, store size.

use crate::common::*;

fn scrape(api: &Api) -> String {
    let r = api.admin.get(api.url("/metrics")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    r.text().unwrap()
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_requests_by_route_issuance_and_the_crl() {
    let (api, _dir) = Api::start(FAST_CONFIG);
    api.issue("m1");
    api.issue("m2");
    assert_eq!(
        api.admin
            .delete(api.url("/production/certificate/m2"))
            .send()
            .unwrap()
            .status(),
        204
    );
    for _ in 0..3 {
        assert_eq!(api.head("/production/certificate/m1"), 200);
    }
    for p in [
        "/nope-1",
        "/nope-2/x/y",
        "/production/certificate_st%61tus/zz",
    ] {
        api.anon.get(api.url(p)).send().unwrap();
    }
    // Anonymous callers are refused by the shipped rules.
    assert_eq!(
        api.anon.get(api.url("/metrics")).send().unwrap().status(),
        403
    );

    let text = scrape(&api);
    // Every sample line is `name{labels} value` or `name value`.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = l.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
        assert!(l.starts_with("certd_"), "{l}");
    }
    let head = r#"certd_http_requests_total{route="/{env}/certificate/{name}",method="HEAD",status="200"}"#;
    assert_eq!(value(&text, head), Some(3.0), "{text}");
    let bucket = r#"certd_http_request_duration_seconds_count{route="/{env}/certificate/{name}",method="HEAD",status="200"}"#;
    assert_eq!(value(&text, bucket), Some(3.0));
    assert_eq!(
        value(
            &text,
            r#"certd_certificates_issued_total{environment="production",issuer="local"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&text, r#"certd_crl_entries{environment="production"}"#),
        Some(1.0)
    );
    assert!(value(&text, r#"certd_crl_bytes{environment="production"}"#).unwrap() > 100.0);
    assert!(value(&text, r#"certd_crl_age_seconds{environment="production"}"#).unwrap() < 60.0);
    assert!(value(&text, "certd_store_size_bytes").unwrap() > 0.0);
    // Raw paths never become labels.
    assert!(!text.contains("nope") && !text.contains("zz"), "{text}");
    assert!(text.contains(r#"route="unmatched""#) || text.contains("status=\"403\""));
}
