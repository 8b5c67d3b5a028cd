//! Who is calling: the client identity from the TLS peer certificate (DESIGN.md section 6).
//!
//! The TLS layer has already verified a presented certificate against the CA chains, so
//! this module only classifies it: which environment's CA issued it, its certname, and
//! whether it is an administrator's.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::RwLock;

use crate::ca::{CertInfo, Certname, EnvName};

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
}

impl Identity {
    /// A caller without a certificate.
    pub fn anonymous() -> Self {
        Identity {
            role: Role::Anonymous,
            certname: None,
            environment: None,
            serial: None,
        }
    }
}

/// Serials of revoked certificates, across environments, for refusing revoked client
/// certificates at the TLS handshake and on connections opened before the revocation.
/// Serials are 128-bit random, so one set serves every environment.
#[derive(Debug, Default)]
pub struct RevokedSerials(RwLock<HashSet<Vec<u8>>>);

impl RevokedSerials {
    /// An empty set, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(RevokedSerials::default())
    }

    /// Whether `serial` (big-endian magnitude) is revoked.
    pub fn contains(&self, serial: &[u8]) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(serial)
    }

    /// Adds revoked serials.
    pub fn extend(&self, serials: impl IntoIterator<Item = Vec<u8>>) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(serials);
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
}

impl Resolver {
    /// A resolver knowing `issuers`, with `admins` as extra admin certnames.
    pub fn new(issuers: Vec<Issuer>, admins: impl IntoIterator<Item = Certname>) -> Self {
        Resolver {
            issuers: RwLock::new(issuers),
            admins: admins.into_iter().collect(),
        }
    }

    /// Adds (or replaces) an environment's issuer.
    pub fn add_issuer(&self, issuer: Issuer) {
        let mut list = self.issuers.write().expect("issuer list lock");
        list.retain(|i| i.environment != issuer.environment);
        list.push(issuer);
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
        let issuers = self.issuers.read().expect("issuer list lock");
        let Some(issuer) = issuers.iter().find(|i| {
            i.subject_der == info.issuer_der
                && match (&i.key_id, &info.authority_key_id) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        }) else {
            return Identity::anonymous();
        };
        let role = if info.pp_cli_auth || self.admins.contains(&certname) {
            Role::Admin
        } else {
            Role::Agent
        };
        Identity {
            role,
            certname: Some(certname),
            environment: Some(issuer.environment.clone()),
            serial: Some(info.serial.as_bytes().to_vec()),
        }
    }
}

/// What a request asks to do; the unit the default rules speak of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read a certificate or the CA chain (GET/HEAD certificate).
    ReadCertificate,
    /// Read the CRL.
    ReadCrl,
    /// Read a certificate request (GET/HEAD certificate_request).
    ReadRequest,
    /// Submit a CSR (PUT certificate_request): bootstrap.
    SubmitRequest,
    /// Read the full status of `certname`.
    ReadStatus(&'a Certname),
    /// List certificates, requests or statuses.
    List,
    /// Sign a pending request.
    Sign,
    /// Revoke a certificate.
    Revoke,
    /// Reject or cancel a request.
    Reject,
    /// Revoke and forget a certificate and its request.
    Clean,
    /// Anything open to every authenticated caller (Puppet's `allow: "*"`).
    Authenticated,
    /// Replace upstream CRLs.
    UpdateCrl,
    /// Create, change or list environments.
    ManageEnvironments,
}

/// What an environment says about who may do what in it.
#[derive(Debug, Clone, Copy)]
pub struct EnvPolicy<'a> {
    /// The environment.
    pub name: &'a EnvName,
    /// Its own administrators: certnames that, with a certificate from this
    /// environment's CA, administer it.
    pub admins: &'a [Certname],
    /// Whether a caller without a certificate may submit a CSR (bootstrap).
    pub allow_anonymous_csr: bool,
}

/// The default rules of DESIGN.md section 6 and seed 004:
/// - anyone reads certificates, the CA chain, the CRL and requests;
/// - a CSR may be submitted by an anonymous caller where the environment allows it, by
///   a member (an agent whose certificate this environment's CA issued), or by an admin;
/// - a member reads its own status;
/// - an environment's admins, and global admins (a certd `pp_cli_auth` certificate or a
///   certname in `[authz] admins`), do everything in it; upstream CRLs are for global
///   admins only.
pub fn permits(who: &Identity, env: &EnvPolicy<'_>, action: Action<'_>) -> bool {
    let global = who.role == Role::Admin;
    let member = who.role != Role::Anonymous && who.environment.as_ref() == Some(env.name);
    let env_admin = member
        && who
            .certname
            .as_ref()
            .is_some_and(|c| env.admins.contains(c));
    match action {
        Action::ReadCertificate | Action::ReadCrl | Action::ReadRequest => true,
        Action::SubmitRequest => match who.role {
            Role::Anonymous => env.allow_anonymous_csr,
            _ => global || member,
        },
        Action::Authenticated => who.role != Role::Anonymous,
        Action::UpdateCrl | Action::ManageEnvironments => global,
        Action::ReadStatus(name) => {
            global || env_admin || (member && who.certname.as_ref() == Some(name))
        }
        Action::List | Action::Sign | Action::Revoke | Action::Reject | Action::Clean => {
            global || env_admin
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
        .to_der()
        .unwrap()
    }

    #[test]
    fn default_rules_follow_the_design() {
        let prod = EnvName::production();
        let dev = EnvName::parse("dev").unwrap();
        let web1 = Certname::parse("web1").unwrap();
        let other = Certname::parse("web2").unwrap();
        let ops = Certname::parse("ops").unwrap();
        let admins = [ops.clone()];
        let p = EnvPolicy {
            name: &prod,
            admins: &[],
            allow_anonymous_csr: true,
        };
        let d = EnvPolicy {
            name: &dev,
            admins: &admins,
            allow_anonymous_csr: false,
        };
        let who = |role, name: &Certname, env: &EnvName| Identity {
            role,
            certname: Some(name.clone()),
            environment: Some(env.clone()),
            serial: None,
        };
        let anon = Identity::anonymous();
        let agent = who(Role::Agent, &web1, &prod);
        let admin = who(Role::Admin, &Certname::parse("certd-admin").unwrap(), &prod);
        let dev_admin = who(Role::Agent, &ops, &dev);
        let prod_ops = who(Role::Agent, &ops, &prod);
        for w in [&anon, &agent, &admin, &dev_admin] {
            for a in [
                Action::ReadCertificate,
                Action::ReadCrl,
                Action::ReadRequest,
            ] {
                assert!(permits(w, &p, a) && permits(w, &d, a));
            }
        }
        // Submission: anonymous where allowed, members, admins.
        assert!(permits(&anon, &p, Action::SubmitRequest));
        assert!(!permits(&anon, &d, Action::SubmitRequest));
        assert!(permits(&agent, &p, Action::SubmitRequest));
        assert!(
            !permits(&agent, &d, Action::SubmitRequest),
            "not a member of dev"
        );
        assert!(permits(&admin, &d, Action::SubmitRequest));
        for a in [
            Action::List,
            Action::Sign,
            Action::Revoke,
            Action::Reject,
            Action::Clean,
            Action::ReadStatus(&web1),
        ] {
            assert!(!permits(&anon, &p, a), "{a:?}");
            assert!(permits(&admin, &p, a) && permits(&admin, &d, a), "{a:?}");
            assert!(permits(&dev_admin, &d, a), "{a:?}");
            assert!(
                !permits(&dev_admin, &p, a),
                "{a:?}: dev's admin is not production's"
            );
            assert!(
                !permits(&prod_ops, &d, a),
                "{a:?}: the name alone, from another CA, is not dev's admin"
            );
        }
        assert!(permits(&agent, &p, Action::ReadStatus(&web1)));
        assert!(!permits(&agent, &p, Action::ReadStatus(&other)));
        assert!(!permits(&agent, &d, Action::ReadStatus(&web1)));
        for a in [
            Action::List,
            Action::Sign,
            Action::Revoke,
            Action::Reject,
            Action::Clean,
        ] {
            assert!(!permits(&agent, &p, a), "{a:?}");
        }
        assert!(
            permits(&admin, &p, Action::UpdateCrl) && !permits(&dev_admin, &d, Action::UpdateCrl)
        );
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
        );

        assert_eq!(r.identify(None), Identity::anonymous());
        let agent = r.identify(Some(&leaf(&dev, "web1", ProfileKind::Agent)));
        assert_eq!(
            (agent.role, agent.environment.unwrap().as_str()),
            (Role::Agent, "dev")
        );
        let admin = r.identify(Some(&leaf(&prod, "certd-admin", ProfileKind::Admin)));
        assert_eq!(
            (admin.role, admin.certname.unwrap().as_str()),
            (Role::Admin, "certd-admin")
        );
        assert_eq!(
            r.identify(Some(&leaf(&prod, "ops1", ProfileKind::Agent)))
                .role,
            Role::Admin
        );
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
