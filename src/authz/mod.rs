//! Who is calling: the client identity from the TLS peer certificate (the roles of `manual::api`).
//!
//! The TLS layer has already verified a presented certificate against the CA chains, so
//! this module only classifies it: which environment's CA issued it, its certname, and
//! whether it is an administrator's.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::RwLock;

use crate::ca::{CertInfo, Certname, EnvName, SerialSet};

mod rules;
pub use rules::{AuthzError, EnvFacts, Matched, Reach, Rules};

/// The caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// No client certificate.
    Anonymous,
    /// A valid certificate from one of this CA's environments.
    Agent,
    /// A certificate carrying `pp_cli_auth`, or a certname listed as admin.
    Admin,
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The role.
    pub role: Role,
    /// The certificate's certname (absent for anonymous callers).
    pub certname: Option<Certname>,
    /// The environment whose CA issued the certificate.
    pub environment: Option<EnvName>,
    /// The certificate's serial (to refuse it once revoked).
    pub serial: Option<Vec<u8>>,
    /// The certificate's `notAfter` (to refuse it once expired, on a connection that
    /// outlives it).
    pub not_after: Option<crate::ca::UnixTime>,
    /// The certificate's string-valued extensions: dotted OID and text (for rules that
    /// name an extension value, like Puppet's `pp_cli_auth`).
    pub extensions: Vec<(String, String)>,
}

impl Identity {
    /// A caller without a certificate.
    pub fn anonymous() -> Self {
        Identity {
            role: Role::Anonymous,
            certname: None,
            environment: None,
            serial: None,
            not_after: None,
            extensions: Vec::new(),
        }
    }
}

/// Serials of revoked certificates, by the environment whose CA issued them, for
/// refusing revoked client certificates at the TLS handshake and on connections opened
/// before the revocation. A serial is unique within its environment only (and every one
/// certd serves is public): a revocation in one environment refuses nothing of another.
#[derive(Debug, Default)]
pub struct RevokedSerials(RwLock<HashMap<EnvName, SerialSet>>);

impl RevokedSerials {
    /// An empty set, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(RevokedSerials::default())
    }

    /// Whether `serial` (big-endian magnitude) of `env` is revoked.
    pub fn contains(&self, env: &EnvName, serial: &[u8]) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(env)
            .is_some_and(|set| set.contains(serial))
    }

    /// Whether `serial` is revoked in any environment: for a certificate whose issuer is
    /// none of the environments' CAs (refused rather than let through).
    pub fn contains_anywhere(&self, serial: &[u8]) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|set| set.contains(serial))
    }

    /// Adds revoked serials of `env`.
    pub fn extend(&self, env: &EnvName, serials: impl IntoIterator<Item = Vec<u8>>) {
        let mut all = self.0.write().unwrap_or_else(|p| p.into_inner());
        let set = all.entry(env.clone()).or_default();
        for s in serials {
            set.insert(&s);
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.certname, &self.environment) {
            (Some(c), Some(e)) => write!(f, "{:?} {c}@{e}", self.role),
            _ => write!(f, "{:?}", self.role),
        }
    }
}

/// One issuing CA a client certificate may come from.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Its environment.
    pub environment: EnvName,
    /// DER of its subject name (a client certificate's issuer name must equal it).
    pub subject_der: Vec<u8>,
    /// Its subject key identifier (a client certificate's AKI must equal it, when both
    /// are present).
    pub key_id: Option<Vec<u8>>,
}

/// Classifies peer certificates. Issuers can be added at run time (new environments).
#[derive(Debug, Default)]
pub struct Resolver {
    issuers: RwLock<Vec<Issuer>>,
    admins: HashSet<Certname>,
    admin_envs: HashSet<EnvName>,
}

impl Resolver {
    /// A resolver knowing `issuers`, with `admins` as extra admin certnames. Only a
    /// certificate issued by the CA of one of `admin_envs` makes its holder an admin
    /// (by name or by `pp_cli_auth`): a name is vouched for by the CA that signed it,
    /// and a tenant's CA may not vouch for a global administrator.
    pub fn new(
        issuers: Vec<Issuer>,
        admins: impl IntoIterator<Item = Certname>,
        admin_envs: impl IntoIterator<Item = EnvName>,
    ) -> Self {
        Resolver {
            issuers: RwLock::new(issuers),
            admins: admins.into_iter().collect(),
            admin_envs: admin_envs.into_iter().collect(),
        }
    }

    /// Adds (or replaces) an environment's issuer.
    pub fn add_issuer(&self, issuer: Issuer) {
        let mut list = self.issuers.write().unwrap_or_else(|p| p.into_inner());
        list.retain(|i| i.environment != issuer.environment);
        list.push(issuer);
    }

    /// The environment whose CA issued a certificate naming `issuer_der` as its issuer
    /// and `key_id` as its authority key identifier.
    pub fn issuer_environment(&self, issuer_der: &[u8], key_id: Option<&[u8]>) -> Option<EnvName> {
        let issuers = self.issuers.read().unwrap_or_else(|p| p.into_inner());
        issuers
            .iter()
            .find(|i| {
                i.subject_der == issuer_der
                    && match (&i.key_id, key_id) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    }
            })
            .map(|i| i.environment.clone())
    }

    /// The identity of a caller presenting `peer_der` (already verified by TLS), or an
    /// anonymous identity when there is none. A certificate that is not from one of the
    /// environments' CAs, or whose CN is not a valid certname, is treated as anonymous.
    pub fn identify(&self, peer_der: Option<&[u8]>) -> Identity {
        let Some(der) = peer_der else {
            return Identity::anonymous();
        };
        let Ok(info) = CertInfo::from_der(der) else {
            return Identity::anonymous();
        };
        let Some(certname) = info
            .common_name
            .as_deref()
            .and_then(|cn| Certname::parse(cn).ok())
        else {
            return Identity::anonymous();
        };
        let Some(environment) =
            self.issuer_environment(&info.issuer_der, info.authority_key_id.as_deref())
        else {
            return Identity::anonymous();
        };
        let vouched = self.admin_envs.contains(&environment);
        let role = if vouched && (info.pp_cli_auth || self.admins.contains(&certname)) {
            Role::Admin
        } else {
            Role::Agent
        };
        Identity {
            role,
            certname: Some(certname),
            environment: Some(environment),
            serial: Some(info.serial.as_bytes().to_vec()),
            not_after: Some(info.not_after),
            extensions: info
                .extensions
                .iter()
                .filter_map(|(oid, _, value)| Some((oid.clone(), crate::ca::der_text(value)?)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CaPair, FixedClock, KeyType, OsRng, Profile, ProfileKind, Subject};

    fn issuer_of(env: &str, ca: &CaPair) -> Issuer {
        let info = CertInfo::from_der(&ca.cert().to_der().unwrap()).unwrap();
        Issuer {
            environment: EnvName::parse(env).unwrap(),
            subject_der: ca.cert().subject_name().to_der().unwrap(),
            key_id: info.subject_key_id,
        }
    }

    fn leaf(ca: &CaPair, name: &str, kind: ProfileKind) -> Vec<u8> {
        let key = KeyType::EcP256.generate().unwrap();
        let subject = Subject::new(Certname::parse(name).unwrap());
        ca.sign_leaf(
            &subject,
            &key.public_key().unwrap(),
            &Profile::new(kind, 3600),
            &FixedClock::new(1_700_000_000),
            &OsRng,
        )
        .unwrap()
    }

    /// Decides with the shipped rules, production allowing anonymous CSRs and dev
    /// having "ops" as its admin.
    fn shipped(who: &Identity, method: &str, path: &str) -> bool {
        let rules = Rules::builtin();
        let (prod, dev) = (EnvName::production(), EnvName::parse("dev").unwrap());
        let ops = [Certname::parse("ops").unwrap()];
        let facts = [
            EnvFacts {
                name: &prod,
                admins: &[],
                allow_anonymous_csr: true,
            },
            EnvFacts {
                name: &dev,
                admins: &ops,
                allow_anonymous_csr: false,
            },
        ];
        let Some(m) = rules.find(method, path) else {
            return false;
        };
        let env = m.environment();
        m.permits(who, facts.iter().find(|f| Some(f.name) == env.as_ref()))
    }

    #[test]
    fn default_rules_follow_the_design() {
        let who = |role, name: &str, env: &str| Identity {
            role,
            certname: Some(Certname::parse(name).unwrap()),
            environment: Some(EnvName::parse(env).unwrap()),
            serial: None,
            not_after: None,
            extensions: Vec::new(),
        };
        let anon = Identity::anonymous();
        let agent = who(Role::Agent, "web1", "production");
        let admin = who(Role::Admin, "certd-admin", "production");
        let dev_admin = who(Role::Agent, "ops", "dev");
        let prod_ops = who(Role::Agent, "ops", "production");
        for w in [&anon, &agent, &admin, &dev_admin] {
            for env in ["production", "dev"] {
                for (m, p) in [
                    ("GET", "/{e}/certificate/web1"),
                    ("HEAD", "/{e}/certificate/ca"),
                    ("GET", "/{e}/certificate_revocation_list/ca"),
                    ("GET", "/{e}/certificate_request/web1"),
                ] {
                    assert!(shipped(w, m, &p.replace("{e}", env)), "{w} {m} {p}");
                }
            }
        }
        // Submission: anonymous where allowed, members, global admins.
        let put = |w: &Identity, env: &str| {
            shipped(w, "PUT", &format!("/{env}/certificate_request/web1"))
        };
        assert!(put(&anon, "production") && !put(&anon, "dev"));
        assert!(put(&agent, "production"));
        assert!(!put(&agent, "dev"), "not a member of dev");
        assert!(put(&admin, "dev") && put(&dev_admin, "dev"));
        for (m, p) in [
            ("GET", "/{e}/certificate/"),
            ("POST", "/{e}/certificate/"),
            ("DELETE", "/{e}/certificate/web1"),
            ("DELETE", "/{e}/certificate_request/web1"),
            ("GET", "/{e}/certificate_requests/"),
            ("GET", "/{e}/certificate_statuses/*"),
            ("GET", "/{e}/certificate_status/web1"),
            ("PUT", "/{e}/certificate_status/web1"),
            ("DELETE", "/{e}/certificate_status/web1"),
        ] {
            let (prod, dev) = (p.replace("{e}", "production"), p.replace("{e}", "dev"));
            assert!(!shipped(&anon, m, &prod), "{m} {p}");
            assert!(
                shipped(&admin, m, &prod) && shipped(&admin, m, &dev),
                "{m} {p}"
            );
            assert!(shipped(&dev_admin, m, &dev), "{m} {p}");
            assert!(
                !shipped(&dev_admin, m, &prod),
                "{m} {p}: dev's admin is not production's"
            );
            assert!(
                !shipped(&prod_ops, m, &dev),
                "{m} {p}: the name alone, from another CA, is not dev's admin"
            );
            if !p.ends_with("certificate_status/web1") || m != "GET" {
                assert!(!shipped(&agent, m, &prod), "{m} {p}");
            }
        }
        assert!(shipped(
            &agent,
            "GET",
            "/production/certificate_status/web1"
        ));
        assert!(!shipped(
            &agent,
            "GET",
            "/production/certificate_status/web2"
        ));
        assert!(!shipped(&agent, "GET", "/dev/certificate_status/web1"));
        // Global-only resources.
        for (m, p) in [
            ("PUT", "/puppet-ca/v1/certificate_revocation_list"),
            ("GET", "/environments"),
            ("PUT", "/environments/qa"),
        ] {
            assert!(shipped(&admin, m, p), "{m} {p}");
            assert!(
                !shipped(&dev_admin, m, p) && !shipped(&agent, m, p),
                "{m} {p}"
            );
        }
        // Puppet's defaults on its face.
        assert!(shipped(&anon, "GET", "/puppet-ca/v1/certificate/ca"));
        assert!(shipped(
            &anon,
            "PUT",
            "/puppet-ca/v1/certificate_request/web1"
        ));
        assert!(!shipped(
            &dev_admin,
            "PUT",
            "/puppet-ca/v1/certificate_request/x"
        ));
        assert!(!shipped(
            &anon,
            "DELETE",
            "/puppet-ca/v1/certificate_request/x"
        ));
        assert!(!shipped(
            &anon,
            "GET",
            "/puppet-ca/v1/certificate_statuses/any"
        ));
        assert!(!shipped(
            &agent,
            "GET",
            "/puppet-ca/v1/certificate_statuses/any"
        ));
        assert!(shipped(
            &admin,
            "GET",
            "/puppet-ca/v1/certificate_statuses/any"
        ));
        assert!(shipped(&agent, "POST", "/puppet-ca/v1/certificate_renewal"));
        assert!(!shipped(&anon, "POST", "/puppet-ca/v1/certificate_renewal"));
        assert!(!shipped(
            &anon,
            "GET",
            "/puppet-ca/v1/certificate_revocation_list"
        ));
        assert!(shipped(&anon, "GET", "/status/v1/simple"));
        assert!(shipped(&agent, "GET", "/metrics") && !shipped(&anon, "GET", "/metrics"));
        assert!(!shipped(&admin, "GET", "/puppet-ca/v1/unknown"));
    }

    #[test]
    fn classifies_anonymous_agents_and_admins_by_environment() {
        let clock = FixedClock::new(1_700_000_000);
        let root = CaPair::new_root("root", KeyType::EcP256, 86400 * 100, &clock, &OsRng).unwrap();
        let prod = root
            .new_issuing(
                "certd CA: production",
                KeyType::EcP256,
                86400 * 50,
                &clock,
                &OsRng,
            )
            .unwrap();
        let dev = root
            .new_issuing("certd CA: dev", KeyType::EcP256, 86400 * 50, &clock, &OsRng)
            .unwrap();
        let r = Resolver::new(
            vec![issuer_of("production", &prod), issuer_of("dev", &dev)],
            [Certname::parse("ops1").unwrap()],
            [EnvName::production()],
        );

        assert_eq!(r.identify(None), Identity::anonymous());
        let agent = r.identify(Some(&leaf(&dev, "web1", ProfileKind::Agent)));
        assert_eq!(
            (agent.role, agent.environment.unwrap().as_str()),
            (Role::Agent, "dev")
        );
        let admin = r.identify(Some(&leaf(&prod, "certd-admin", ProfileKind::Admin)));
        assert!(
            admin
                .extensions
                .contains(&(crate::ca::PP_CLI_AUTH.to_owned(), "true".to_owned())),
            "rules can name pp_cli_auth=true: {:?}",
            admin.extensions
        );
        assert_eq!(
            (admin.role, admin.certname.unwrap().as_str()),
            (Role::Admin, "certd-admin")
        );
        assert_eq!(
            r.identify(Some(&leaf(&prod, "ops1", ProfileKind::Agent)))
                .role,
            Role::Admin
        );
        // A tenant's CA vouches for no global admin, by name or by pp_cli_auth.
        for kind in [ProfileKind::Agent, ProfileKind::Admin] {
            let who = r.identify(Some(&leaf(&dev, "ops1", kind)));
            assert_eq!(
                (who.role, who.environment.unwrap().as_str()),
                (Role::Agent, "dev"),
                "{kind:?}"
            );
        }
        assert_eq!(r.identify(Some(b"garbage")), Identity::anonymous());

        // A certificate from a CA certd does not know is nobody.
        let foreign = CaPair::new_root(
            "certd CA: production",
            KeyType::EcP256,
            86400,
            &clock,
            &OsRng,
        )
        .unwrap();
        assert_eq!(
            r.identify(Some(&leaf(&foreign, "x", ProfileKind::Admin))),
            Identity::anonymous()
        );
    }
}
