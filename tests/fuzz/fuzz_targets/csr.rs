//! Any bytes as a CSR body: never a panic; anything accepted re-parses from its own DER.
#![no_main]
use certd::ca::{Certname, CsrPolicy, ValidatedCsr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = Certname::parse("fuzz").unwrap();
    let policy = CsrPolicy { allow_subject_alt_names: data.first().is_some_and(|b| b & 1 == 1), ..CsrPolicy::default() };
    if let Ok(csr) = ValidatedCsr::parse(data, &name, &policy) {
        assert!(ValidatedCsr::parse(csr.der(), &name, &policy).is_ok());
        assert!(ValidatedCsr::parse(&csr.to_pem(), &name, &policy).is_ok());
    }
});
