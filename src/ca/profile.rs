//! Certificate profiles: what a certificate contains comes from here, never from a CSR.

use super::UnixTime;

/// What a leaf certificate is for; decides its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    /// An agent (node) certificate: TLS server and client.
    Agent,
    /// The certd HTTPS server's own certificate: as an agent's, with extra SANs.
    Server,
    /// An administrator's client certificate: as an agent's, plus `pp_cli_auth`.
    Admin,
}

/// The validity window and kind of a leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// What the certificate is for.
    pub kind: ProfileKind,
    /// Seconds from issuance to `notAfter`.
    pub validity: i64,
    /// Seconds `notBefore` is set before issuance, to tolerate clock skew between the CA
    /// and its clients (Puppet uses one day).
    pub backdate: i64,
}

impl Profile {
    /// One day, Puppet's backdating.
    pub const DEFAULT_BACKDATE: i64 = 86_400;

    /// A profile of `kind` valid for `validity` seconds, backdated one day.
    pub fn new(kind: ProfileKind, validity: i64) -> Self {
        Profile {
            kind,
            validity,
            backdate: Self::DEFAULT_BACKDATE,
        }
    }

    /// The `(notBefore, notAfter)` window for a certificate issued at `now` by a CA whose
    /// own certificate ends at `ca_not_after`: a leaf never outlives its issuer.
    pub fn window(&self, now: UnixTime, ca_not_after: UnixTime) -> (UnixTime, UnixTime) {
        let not_after = now.saturating_add(self.validity).min(ca_not_after);
        (now.saturating_sub(self.backdate), not_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_backdated_and_clamped_to_the_issuer() {
        let p = Profile::new(ProfileKind::Agent, 1000);
        assert_eq!(
            p.window(10_000_000, i64::MAX),
            (10_000_000 - 86_400, 10_001_000)
        );
        assert_eq!(p.window(10_000_000, 10_000_500).1, 10_000_500);
    }
}
