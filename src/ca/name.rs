//! Certnames and environment names: raw strings become these types or an error, so that
//! a function taking `&Certname` never re-checks.

use std::fmt;

use super::CaError;

/// The subject a certificate is for, valid by construction.
///
/// Puppet Server 7.9.5's strict rule: lowercase letters, digits, `-`, `_`, `.`; first
/// and last character a letter or digit; no `..`, `-.` or `.-`; at most 255 bytes; `ca`
/// is reserved for the CA bundle.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Certname(String);

impl From<Certname> for String {
    fn from(c: Certname) -> String {
        c.0
    }
}

impl TryFrom<String> for Certname {
    type Error = CaError;
    fn try_from(s: String) -> Result<Self, CaError> {
        Certname::parse(&s)
    }
}

/// Longest certname accepted, in bytes.
pub const MAX_CERTNAME_LEN: usize = 255;

fn bad(rule: &'static str, message: String) -> CaError {
    CaError::InvalidCertname {
        rule,
        message,
        puppet: "Subject hostname format is invalid".into(),
    }
}

impl Certname {
    /// Parses `raw` under the certname rules; each broken rule has its own error code.
    pub fn parse(raw: &str) -> Result<Self, CaError> {
        // Made only for an error: a listing parses 100,000 stored names.
        let shown = || -> String {
            raw.chars()
                .take(64)
                .flat_map(char::escape_default)
                .collect()
        };
        if raw.is_empty() {
            return Err(bad("invalid-certname", "certname is empty".into()));
        }
        if raw.len() > MAX_CERTNAME_LEN {
            return Err(bad(
                "invalid-certname",
                format!(
                    "certname is {} bytes; at most {MAX_CERTNAME_LEN} are allowed",
                    raw.len()
                ),
            ));
        }
        if raw.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(CaError::InvalidCertname {
                rule: "invalid-certname",
                message: format!(
                    "certname \"{}\" has uppercase letters; certnames must be lower case",
                    shown()
                ),
                puppet: "Certificate names must be lower case.".into(),
            });
        }
        if raw.contains('*') {
            return Err(CaError::InvalidCertname {
                rule: "invalid-certname",
                message: format!(
                    "certname \"{}\" contains a wildcard, which is not allowed",
                    shown()
                ),
                puppet: format!("Subject contains a wildcard, which is not allowed: {raw}"),
            });
        }
        if let Some(c) = raw
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
        {
            return Err(bad(
                "invalid-certname",
                format!(
                    "certname \"{}\" contains {:?}; use only a-z, 0-9, '-', '_' and '.'",
                    shown(),
                    c
                ),
            ));
        }
        let bytes = raw.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(bad(
                "invalid-certname",
                format!(
                    "certname \"{}\" must start and end with a letter or digit",
                    shown()
                ),
            ));
        }
        if raw.contains("..") || raw.contains("-.") || raw.contains(".-") {
            return Err(bad(
                "invalid-certname",
                format!(
                    "certname \"{}\" has an empty label or a label that starts or ends with '-'",
                    shown()
                ),
            ));
        }
        if raw == "ca" {
            return Err(bad(
                "reserved-certname",
                "certname \"ca\" is reserved for the CA certificate".into(),
            ));
        }
        Ok(Certname(raw.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Certname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Certname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certname({:?})", self.0)
    }
}

/// An environment (tenant) name: `^[a-z0-9][a-z0-9_-]{0,62}$`, valid by construction.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvName(String);

/// The longest environment name: its issuing CA's common name is `certd CA: <name>`,
/// and a common name holds at most 64 characters (RFC 5280 ub-common-name).
pub const MAX_ENV_NAME: usize = 64 - "certd CA: ".len();

/// Names that are not environments: the top-level path segments of certd's own routes
/// (`/puppet-ca/...`, `/status`, `/environments`, `/metrics`) and those the design
/// reserves for faces to come (`/dashboard/`, ACME's `/acme/`). A route added at the top
/// level is added here.
pub const RESERVED_ENV_NAMES: [&str; 6] = [
    "puppet-ca",
    "status",
    "environments",
    "metrics",
    "dashboard",
    "acme",
];

impl EnvName {
    /// Parses `raw` under the environment naming rule: 1 to [`MAX_ENV_NAME`] of a-z,
    /// 0-9, `_` and `-`, starting with a letter or digit, and not one of
    /// [`RESERVED_ENV_NAMES`].
    pub fn parse(raw: &str) -> Result<Self, CaError> {
        let b = raw.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_ENV_NAME
            && !RESERVED_ENV_NAMES.contains(&raw)
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
        if ok {
            Ok(EnvName(raw.to_owned()))
        } else {
            let shown: String = raw
                .chars()
                .take(64)
                .flat_map(char::escape_default)
                .collect();
            Err(CaError::InvalidEnvironment(shown))
        }
    }

    /// The environment every installation has from its first start.
    pub fn production() -> Self {
        EnvName("production".into())
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvName({:?})", self.0)
    }
}

/// One allowlist entry: `*` matches everything; `*.domain` matches the domain and any
/// name under it, label by label from the right, case-insensitively; anything else must
/// equal the certname exactly.
pub fn domain_glob_matches(entry: &str, certname: &str) -> bool {
    if entry == "*" {
        return true;
    }
    let Some(domain) = entry.strip_prefix('*') else {
        return entry == certname;
    };
    let want: Vec<String> = domain
        .split('.')
        .filter(|l| !l.is_empty())
        .map(|l| l.to_ascii_lowercase())
        .rev()
        .collect();
    let have: Vec<String> = certname
        .split('.')
        .map(|l| l.to_ascii_lowercase())
        .rev()
        .collect();
    have.len() >= want.len() && want.iter().zip(&have).all(|(w, h)| w == h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_certnames() {
        for ok in [
            "agent1",
            "a",
            "web-01.example.com",
            "node_7.dc1",
            "a_b",
            "1.2.3.4",
            "x._y",
        ] {
            assert!(Certname::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn rejects_certnames_breaking_each_rule() {
        let long = "a".repeat(256);
        for bad in [
            "",
            "Agent",
            "*.example.com",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "_a",
            "a_",
            "a-.b",
            "a.-b",
            "a/b",
            "a%2Fb",
            "a\0b",
            "ä",
            "a b",
            &long,
        ] {
            let err = Certname::parse(bad).unwrap_err();
            assert_eq!(err.code(), "invalid-certname", "{bad:?}");
        }
        assert_eq!(
            Certname::parse("ca").unwrap_err().code(),
            "reserved-certname"
        );
        assert!(Certname::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn environment_names_follow_the_pattern() {
        for ok in ["production", "a", "dev_1", "x-y", &"a".repeat(54)] {
            assert!(EnvName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "_a",
            "-a",
            "Prod",
            "a.b",
            "a/b",
            &"a".repeat(55),
            "puppet-ca",
            "metrics",
        ] {
            assert!(EnvName::parse(bad).is_err(), "{bad}");
        }
    }

    /// Puppet 7.9.5's rule written as a second, independent formulation: labels split on
    /// '.', each label non-empty of [a-z0-9_-], no label starts or ends with '-', and the
    /// whole name starts and ends with [a-z0-9].
    fn puppet_rule(s: &str) -> bool {
        let b = s.as_bytes();
        !s.is_empty()
            && s.len() <= 255
            && s != "ca"
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && s.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_'
                    })
            })
    }

    proptest! {
        #[test]
        fn parse_agrees_with_label_formulation(s in "[a-zA-Z0-9._*/-]{0,12}") {
            prop_assert_eq!(Certname::parse(&s).is_ok(), puppet_rule(&s));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = Certname::parse(&s);
            let _ = EnvName::parse(&s);
        }
    }

    #[test]
    fn domain_globs_match_like_puppet() {
        assert!(domain_glob_matches("*", "anything"));
        assert!(domain_glob_matches("*.example.com", "a.example.com"));
        assert!(domain_glob_matches("*.example.com", "a.b.example.com"));
        assert!(domain_glob_matches("*.example.com", "example.com"));
        assert!(domain_glob_matches("*.Example.COM", "a.example.com"));
        assert!(!domain_glob_matches("*.example.com", "example.org"));
        assert!(!domain_glob_matches("*.example.com", "badexample.com"));
        assert!(domain_glob_matches("web1", "web1"));
        assert!(!domain_glob_matches("web1", "web10"));
    }
}
