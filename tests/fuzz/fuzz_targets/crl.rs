//! Any bytes as an uploaded CRL bundle (PUT certificate_revocation_list): never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for crl in certd::ca::parse_crls(data) {
        let _ = certd::ca::parse_crl(&crl.der);
    }
    let _ = certd::ca::parse_crl(data);
});
