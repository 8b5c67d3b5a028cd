//! Environments created and updated at run time (`PUT /environments/{env}`), beside those
//! declared in the configuration file. A new environment gets its issuing CA under the
//! root; its settings are kept in the store, so a restart keeps it.

use std::sync::Arc;

use serde::Serialize;

use super::{issuer_of, load_env, setup, App, AppError};
use crate::ca::{CaError, Digest, EnvName, Fingerprint};
use crate::config::{ApiEnvSettings, EnvConfig};
use crate::store::EnvRecord;

/// An environment as `GET /environments` shows it.
#[derive(Debug, Serialize)]
pub struct EnvView {
    /// Its name.
    pub name: String,
    /// `config` (declared in the configuration file) or `api` (created at run time).
    pub source: &'static str,
    /// SHA-256 fingerprint of its issuing CA certificate.
    pub ca_fingerprint: String,
    /// Its settings: as the API gave them (issuers and autosign policies by name), or
    /// as the file declares them with every secret shown as `"(set)"`.
    pub settings: serde_json::Value,
}

/// `settings` as JSON with each issuer's secret (`auth_key`) replaced by `"(set)"`: a
/// view shows that a secret is set, never its value.
fn redacted(settings: &EnvConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(settings).unwrap_or_default();
    if let Some(issuers) = v.get_mut("issuer").and_then(|i| i.as_array_mut()) {
        for issuer in issuers {
            if let Some(key) = issuer.get_mut("auth_key") {
                *key = serde_json::Value::from("(set)");
            }
        }
    }
    v
}

/// What `PUT /environments/{env}` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvChange {
    /// A new environment, with its issuing CA.
    Created,
    /// New settings for an environment created through the API.
    Updated,
}

impl App {
    fn view(&self, env: &super::EnvCa) -> Result<EnvView, AppError> {
        let der = env.ca.cert().to_der().map_err(CaError::from)?;
        let declared = self.config.environments.contains_key(&env.name);
        let settings = match (&env.api_settings, declared) {
            (Some(api), false) => serde_json::to_value(api).unwrap_or_default(),
            _ => redacted(&env.settings),
        };
        Ok(EnvView {
            name: env.name.to_string(),
            source: if declared { "config" } else { "api" },
            ca_fingerprint: Fingerprint::of_der(&der, Digest::Sha256).to_string(),
            settings,
        })
    }

    /// `GET /environments`: every environment (global admins only).
    pub fn list_environments(&self) -> Result<Vec<EnvView>, AppError> {
        self.env_list().iter().map(|e| self.view(e)).collect()
    }

    /// `GET /environments/{env}`.
    pub fn environment_view(&self, raw_env: &str) -> Result<EnvView, AppError> {
        let (_, env) = self.environment(raw_env)?;
        self.view(&env)
    }

    /// Serves `name` with `api`'s settings (as the store holds them; created by another
    /// node, or changed there), in place of what was served.
    pub(super) fn install_environment(
        &self,
        name: &EnvName,
        api: ApiEnvSettings,
    ) -> Result<(), AppError> {
        let settings = api
            .resolve(&self.config)
            .map_err(|detail| AppError::BadRequest {
                code: "invalid-settings",
                detail: format!("environment {name}: {detail}"),
            })?;
        let mut envs = self.envs.write().unwrap_or_else(|p| p.into_inner());
        self.install_locked(&mut envs, name, settings, api)?;
        Ok(())
    }

    /// Loads `name` (its CA from the data directory or vault, its CRL re-issued from the
    /// store) and serves it, under the lock on the environments; the CA's client
    /// certificates are trusted from now on.
    fn install_locked(
        &self,
        envs: &mut std::collections::BTreeMap<EnvName, Arc<super::EnvCa>>,
        name: &EnvName,
        settings: EnvConfig,
        api: ApiEnvSettings,
    ) -> Result<Arc<super::EnvCa>, AppError> {
        let (mut loaded, serials) = load_env(
            &self.data,
            self.store.as_ref(),
            &self.config,
            name,
            settings,
            &self.clock,
            &self.rng,
        )?;
        loaded.api_settings = Some(api);
        self.revoked.extend(name, serials);
        let loaded = Arc::new(loaded);
        let new = envs.insert(name.clone(), loaded.clone()).is_none();
        if new {
            self.resolver.add_issuer(issuer_of(name, &loaded.ca)?);
            self.trust_generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(loaded)
    }

    /// `PUT /environments/{env}` with JSON settings (the keys of an
    /// `[environments.<name>]` table): creates the environment and its issuing CA, or
    /// replaces the settings of one created this way. Environments declared in the
    /// configuration file are changed there, not here (409).
    pub fn put_environment(
        &self,
        raw_env: &str,
        body: &[u8],
    ) -> Result<(EnvChange, EnvView), AppError> {
        let name = EnvName::parse(raw_env)?;
        if self.config.environments.contains_key(&name) {
            return Err(AppError::Conflict {
                code: "declared-in-config",
                detail: format!(
                    "environment {name} is declared in the configuration file; change it there"
                ),
            });
        }
        let api: ApiEnvSettings = if body.iter().all(u8::is_ascii_whitespace) {
            ApiEnvSettings::default()
        } else {
            serde_json::from_slice(body).map_err(|e| AppError::BadRequest {
                code: "bad-json",
                detail: format!("the settings are not valid: {e}"),
            })?
        };
        let settings = api
            .resolve(&self.config)
            .map_err(|detail| AppError::BadRequest {
                code: "invalid-settings",
                detail,
            })?;
        let json = serde_json::to_string(&api).map_err(|e| AppError::BadRequest {
            code: "bad-json",
            detail: e.to_string(),
        })?;
        // What other nodes sharing the store did first: one may have created it.
        self.follow_changes()?;
        // One environment change at a time.
        let mut envs = self.envs.write().unwrap_or_else(|p| p.into_inner());
        let now = self.now();
        let change = if envs.contains_key(&name) {
            EnvChange::Updated
        } else if envs.len() >= self.config.limits.max_environments {
            return Err(AppError::Conflict {
                code: "too-many-environments",
                detail: format!(
                    "certd serves {} environments, the most [limits] max_environments allows",
                    envs.len()
                ),
            });
        } else {
            setup::create_env_ca(
                &self.data,
                &self.config,
                &self.root,
                &name,
                self.clock.as_ref(),
                self.rng.as_ref(),
            )?;
            setup::ensure_env_in_store(
                self.store.as_ref(),
                &self.data,
                &self.config,
                &name,
                self.clock.as_ref(),
            )?;
            EnvChange::Created
        };
        let created_at = self
            .store
            .environments()?
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r.created_at)
            .unwrap_or(now);
        self.store.put_environment(
            &name,
            &EnvRecord {
                created_at,
                settings: Some(json),
            },
            now,
        )?;
        self.store.flush()?;
        let loaded = self.install_locked(&mut envs, &name, settings, api)?;
        let view = self.view(&loaded)?;
        tracing::info!(env = %name, ?change, "environment changed through the API");
        Ok((change, view))
    }
}
