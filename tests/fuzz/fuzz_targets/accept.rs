//! Any Accept header (and digest parameter) against a certificate's offers: never a
//! panic; the answer is a representation or a 4xx.
#![no_main]
use actix_web::http::header::{HeaderMap, HeaderValue, ACCEPT};
use certd::http::negotiate::Offer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, value);
    let offer = Offer::pem_der("application/pkix-cert").json().fingerprint();
    if let Err(p) = offer.choose(&headers) {
        assert!(p.status().is_client_error());
    }
});
