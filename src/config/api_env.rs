//! The settings of an environment created through the API (`PUT /environments/{env}`):
//! the keys of an `[environments.<name>]` table, except that the issuer and the autosign
//! policy are *names* of what the configuration file declares (`[issuers.<name>]`,
//! `[autosign_policies]`), never a program, a path or a URL. An administrator of the API
//! chooses among what the operator allowed; the file stays the only place that says
//! what certd may run, read or call.

use serde::{Deserialize, Serialize};

use super::{Autosign, Config, Duration, EnvConfig, IssuerSpec, Issuers};
use crate::ca::Certname;

/// `PUT /environments/{env}`'s JSON body, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiEnvSettings {
    /// As [`EnvConfig::allow_subject_alt_names`].
    pub allow_subject_alt_names: bool,
    /// As [`EnvConfig::allow_authorization_extensions`].
    pub allow_authorization_extensions: bool,
    /// As [`EnvConfig::allow_rsa_exponent_3`].
    pub allow_rsa_exponent_3: bool,
    /// As [`EnvConfig::allow_duplicate_certs`].
    pub allow_duplicate_certs: bool,
    /// As [`EnvConfig::cert_ttl`].
    pub cert_ttl: Option<Duration>,
    /// `true`, `false`, a list of globs, or `{"policy": NAME}` naming an entry of
    /// `[autosign_policies]`.
    pub autosign: ApiAutosign,
    /// As [`EnvConfig::autosign_timeout`].
    pub autosign_timeout: Duration,
    /// As [`EnvConfig::allow_auto_renewal`].
    pub allow_auto_renewal: bool,
    /// As [`EnvConfig::auto_renewal_cert_ttl`].
    pub auto_renewal_cert_ttl: Duration,
    /// As [`EnvConfig::min_renewal_age`].
    #[serde(
        deserialize_with = "super::duration::zero_or_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_renewal_age: Option<Duration>,
    /// As [`EnvConfig::admins`].
    pub admins: Vec<Certname>,
    /// As [`EnvConfig::allow_anonymous_csr`].
    pub allow_anonymous_csr: Option<bool>,
    /// `"local"`, the name of an `[issuers.<name>]` table, or a list of them.
    pub issuer: IssuerRefs,
}

impl Default for ApiEnvSettings {
    fn default() -> Self {
        let d = EnvConfig::default();
        ApiEnvSettings {
            allow_subject_alt_names: d.allow_subject_alt_names,
            allow_authorization_extensions: d.allow_authorization_extensions,
            allow_rsa_exponent_3: d.allow_rsa_exponent_3,
            allow_duplicate_certs: d.allow_duplicate_certs,
            cert_ttl: d.cert_ttl,
            autosign: ApiAutosign::All(false),
            autosign_timeout: d.autosign_timeout,
            allow_auto_renewal: d.allow_auto_renewal,
            auto_renewal_cert_ttl: d.auto_renewal_cert_ttl,
            min_renewal_age: d.min_renewal_age,
            admins: d.admins,
            allow_anonymous_csr: d.allow_anonymous_csr,
            issuer: IssuerRefs::One(IssuerRef::Name("local".into())),
        }
    }
}

/// The autosign setting an API-created environment may have.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ApiAutosign {
    /// Sign everything, or nothing.
    All(bool),
    /// Certname or domain globs.
    Globs(Vec<String>),
    /// A policy declared in `[autosign_policies]`, by name.
    Policy {
        /// Its name.
        policy: String,
    },
    /// Anything else (a path): read so that the refusal can say what to do instead.
    Other(serde_json::Value),
}

/// One issuer or several.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum IssuerRefs {
    /// One.
    One(IssuerRef),
    /// Several, in order of preference.
    Many(Vec<IssuerRef>),
}

/// An issuer as the API may give it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum IssuerRef {
    /// `local`, or the name of an `[issuers.<name>]` table.
    Name(String),
    /// A table: only `{"type": "local"}` is taken (as older certd stored it); any other
    /// is read so that the refusal can say what to do instead.
    Table(serde_json::Map<String, serde_json::Value>),
}

impl ApiEnvSettings {
    /// The environment's settings, with the names looked up in `config`; the message
    /// says what is wrong.
    pub fn resolve(&self, config: &Config) -> Result<EnvConfig, String> {
        let refs = match &self.issuer {
            IssuerRefs::One(one) => std::slice::from_ref(one),
            IssuerRefs::Many(many) => many.as_slice(),
        };
        if refs.is_empty() {
            return Err("issuer: an empty list serves nothing".into());
        }
        let mut issuers = Vec::new();
        for r in refs {
            issuers.push(match r {
                IssuerRef::Name(n) if n == "local" => IssuerSpec::local(),
                IssuerRef::Name(n) => config.issuers.get(n).cloned().ok_or_else(|| {
                    format!(
                        "issuer {n:?} is not declared in the configuration file (as [issuers.{n}])"
                    )
                })?,
                IssuerRef::Table(t)
                    if t.len() == 1 && t.get("type").and_then(|v| v.as_str()) == Some("local") =>
                {
                    IssuerSpec::local()
                }
                IssuerRef::Table(_) => {
                    return Err("issuer: an environment created through the API names an issuer declared in the configuration file ([issuers.<name>]) or \"local\"; a back end's program, paths and URL are set there only".into())
                }
            });
        }
        let autosign = match &self.autosign {
            ApiAutosign::All(b) => Autosign::All(*b),
            ApiAutosign::Globs(g) => Autosign::Globs(g.clone()),
            ApiAutosign::Policy { policy } => Autosign::Path(
                config.autosign_policies.get(policy).cloned().ok_or_else(|| {
                    format!("autosign policy {policy:?} is not declared in the configuration file ([autosign_policies])")
                })?,
            ),
            ApiAutosign::Other(_) => {
                return Err("autosign: true, false, a list of globs, or {\"policy\": NAME} naming an entry of [autosign_policies]; a program or file is set in the configuration file only".into())
            }
        };
        Ok(EnvConfig {
            allow_subject_alt_names: self.allow_subject_alt_names,
            allow_authorization_extensions: self.allow_authorization_extensions,
            allow_rsa_exponent_3: self.allow_rsa_exponent_3,
            allow_duplicate_certs: self.allow_duplicate_certs,
            cert_ttl: self.cert_ttl,
            autosign,
            autosign_timeout: self.autosign_timeout,
            allow_auto_renewal: self.allow_auto_renewal,
            auto_renewal_cert_ttl: self.auto_renewal_cert_ttl,
            min_renewal_age: self.min_renewal_age,
            admins: self.admins.clone(),
            allow_anonymous_csr: self.allow_anonymous_csr,
            issuer: Issuers(issuers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::ca::CaPair::new_root(
            "upstream",
            crate::ca::KeyType::EcP256,
            3600,
            &crate::ca::FixedClock::new(1_700_000_000),
            &crate::ca::OsRng,
        )
        .unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.cert().to_pem().unwrap()).unwrap();
        Config::from_toml(
            &format!(
                "[issuers.up]\ntype = \"cfssl\"\nurl = \"http://127.0.0.1:9\"\nca_file = \"{}\"\n\
                 [autosign_policies]\nvet = \"/usr/local/bin/vet\"\n",
                ca_file.display()
            ),
            std::path::Path::new("certd.toml"),
        )
        .unwrap()
    }

    fn resolve(json: &str) -> Result<EnvConfig, String> {
        serde_json::from_str::<ApiEnvSettings>(json)
            .map_err(|e| e.to_string())?
            .resolve(&config())
    }

    /// Settings stored by this version are read by the one before (which refuses
    /// unknown keys) while a cluster is upgraded node by node: an unset new key is
    /// not written.
    #[test]
    fn an_unset_renewal_age_is_not_stored() {
        let json = serde_json::to_string(&ApiEnvSettings::default()).unwrap();
        assert!(!json.contains("min_renewal_age"), "{json}");
        let set: ApiEnvSettings = serde_json::from_str(r#"{"min_renewal_age": 0}"#).unwrap();
        assert_eq!(set.min_renewal_age.map(Duration::as_secs), Some(0));
        let again = serde_json::to_string(&set).unwrap();
        let back: ApiEnvSettings = serde_json::from_str(&again).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn names_resolve_to_what_the_file_declares_and_nothing_else_is_taken() {
        let env = resolve(r#"{"issuer": ["up", "local"], "autosign": {"policy": "vet"}}"#).unwrap();
        match &env.issuer.0[0].backend {
            crate::config::Backend::Cfssl(c) => assert_eq!(c.url, "http://127.0.0.1:9"),
            other => panic!("{other:?}"),
        }
        assert_eq!(env.autosign, Autosign::Path("/usr/local/bin/vet".into()));
        assert!(resolve(r#"{"issuer": [{"type": "local"}]}"#).is_ok());
        for bad in [
            r#"{"issuer": {"type": "command", "program": "/bin/sh"}}"#,
            r#"{"issuer": [{"type": "local", "name": "x"}]}"#,
            r#"{"issuer": "nope"}"#,
            r#"{"issuer": []}"#,
            r#"{"autosign": "/bin/true"}"#,
            r#"{"autosign": {"policy": "nope"}}"#,
            r#"{"autosign": {"program": "/bin/true"}}"#,
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
    }
}
