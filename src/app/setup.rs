//! `certd setup`: the root CA, one issuing CA per configured environment, the HTTPS
//! server identity, the admin client identity, and the store.
//!
//! Completion marker: `ca/root.pem` is written last. A setup interrupted before that is
//! redone from the start by the next run; once it exists, setup changes nothing.

use std::net::IpAddr;

use crate::ca::{
    build_crl, CaPair, Certname, Clock, CrlParams, EnvName, Profile, ProfileKind, Rng,
    SerialNumber, Subject,
};
use crate::config::Config;
use crate::store::{CaKey, CrlRecord, DataDir, EnvRecord, Store};

use super::AppError;

/// What [`setup`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupOutcome {
    /// A new data directory was written.
    Created,
    /// The directory was already set up; nothing changed.
    AlreadySetUp,
    /// The store is another node's installation: its files were written from the
    /// vault (the CA certificates and the server identity; no admin identity).
    Joined,
}

/// Sets up `data` (and the store's first records) unless it already is.
pub fn setup(
    data: &DataDir,
    config: &Config,
    store: &dyn Store,
    clock: &dyn Clock,
    rng: &dyn Rng,
) -> Result<SetupOutcome, AppError> {
    if data.is_set_up() {
        return Ok(SetupOutcome::AlreadySetUp);
    }
    if data.can_join()? {
        let envs: Vec<EnvName> = store.environments()?.into_iter().map(|(e, _)| e).collect();
        data.share(&envs)?;
        if data.is_set_up() {
            return Ok(SetupOutcome::Joined);
        }
    }
    // A short random tag tells this installation's root apart from any other's.
    let tag = SerialNumber::random(rng).to_string();
    let root = CaPair::new_root(
        &format!("certd Root CA: {}", &tag[..8.min(tag.len())]),
        config.ca.key_type,
        config.ca.root_ttl.as_secs(),
        clock,
        rng,
    )?;
    data.write_ca_key(CaKey::Root, &root.key().to_pem()?)?;

    for env in config.environments.keys() {
        create_env_ca(data, config, &root, env, clock, rng)?;
    }
    let production = CaPair::from_pem(
        &data.read(&data.env_cert(&EnvName::production()))?,
        &data.read_ca_key(CaKey::Issuing(&EnvName::production()))?,
    )?;

    // The HTTPS server certificate, from the production CA.
    let host = crate::config::host_name().map(|h| h.to_ascii_lowercase());
    let server_name = host
        .as_deref()
        .and_then(|h| Certname::parse(h).ok())
        .or_else(|| Certname::parse("localhost").ok())
        .ok_or_else(|| {
            AppError::Pki(crate::ca::CaError::BadCertificate("no server name".into()))
        })?;
    let mut subject = Subject::new(server_name);
    subject.dns_names.push("localhost".into());
    subject.ip_addrs.push(IpAddr::from([127, 0, 0, 1]));
    subject
        .ip_addrs
        .push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
    for name in &config.server.dns_alt_names {
        match name.parse::<IpAddr>() {
            Ok(ip) => subject.ip_addrs.push(ip),
            Err(_) => subject.dns_names.push(name.clone()),
        }
    }
    let server_key = config.server.tls_key_type.generate()?;
    let profile = Profile::new(ProfileKind::Server, config.ca.cert_ttl.as_secs());
    let server_public = server_key.public_key()?;
    let server = production.sign_leaf(&subject, &server_public, &profile, clock, rng)?;
    data.write_secret(&data.server_key(), &server_key.to_pem()?)?;
    data.write_public(
        &data.server_cert(),
        &crate::ca::pem_encode("CERTIFICATE", &server),
    )?;

    // The admin client certificate, carrying pp_cli_auth.
    let admin_key = config.ca.admin_key_type.generate()?;
    let profile = Profile::new(ProfileKind::Admin, config.ca.cert_ttl.as_secs());
    let admin_public = admin_key.public_key()?;
    let admin = production.sign_leaf(
        &Subject::new(config.admin_certname.clone()),
        &admin_public,
        &profile,
        clock,
        rng,
    )?;
    data.write_secret(&data.admin_key(), &admin_key.to_pem()?)?;
    data.write_public(
        &data.admin_cert(),
        &crate::ca::pem_encode("CERTIFICATE", &admin),
    )?;

    for env in config.environments.keys() {
        ensure_env_in_store(store, data, config, env, clock)?;
    }
    super::crl::ensure_root(&root, store, config, clock)?;
    store.flush()?;
    data.write_public(
        &data.root_cert(),
        &root.cert().to_pem().map_err(crate::ca::CaError::from)?,
    )?;
    // Where the keys are in a vault, the other nodes' way in.
    let envs: Vec<EnvName> = config.environments.keys().cloned().collect();
    data.share(&envs)?;
    Ok(SetupOutcome::Created)
}

/// Creates an environment's issuing CA under `root`: `ca.key`, `chain.pem`, then
/// `ca.pem` (its completion marker).
pub(crate) fn create_env_ca(
    data: &DataDir,
    config: &Config,
    root: &CaPair,
    env: &EnvName,
    clock: &dyn Clock,
    rng: &dyn Rng,
) -> Result<(), AppError> {
    let cn = format!("certd CA: {env}");
    let ttl = config.ca.issuing_ttl.as_secs();
    let (issuing, stored) = match data.vault_ca_key(CaKey::Issuing(env))? {
        // Left by a creation that was cut off (the vault never replaces a key): its
        // chain, shared or written here, if that got done; else a certificate for it.
        Some(pem) => {
            data.share(std::slice::from_ref(env))?;
            data.follow_shared_chain(env)?;
            if data.env_chain(env).is_file() && data.env_cert(env).is_file() {
                CaPair::from_pem(&data.read(&data.env_cert(env))?, &pem)?;
                return Ok(());
            }
            let key = crate::ca::PrivateKey::from_pem(&pem)?;
            (root.certify_issuing(key, &cn, ttl, clock, rng)?, true)
        }
        None => (
            root.new_issuing(&cn, config.ca.key_type, ttl, clock, rng)?,
            false,
        ),
    };
    let issuing_pem = issuing.cert().to_pem().map_err(crate::ca::CaError::from)?;
    let mut chain = issuing_pem.clone();
    chain.extend_from_slice(&root.cert().to_pem().map_err(crate::ca::CaError::from)?);
    if !stored {
        data.write_ca_key(CaKey::Issuing(env), &issuing.key().to_pem()?)?;
    }
    data.write_public(&data.env_chain(env), &chain)?;
    data.write_public(&data.env_cert(env), &issuing_pem)?;
    data.share(std::slice::from_ref(env))?;
    data.follow_shared_chain(env)?;
    Ok(())
}

/// Records the certificates setup signed (the admin's and the server's) in production,
/// as every certificate certd signs is recorded, so that they are listed and revocable.
/// Done at every start, so a data directory set up before this was done gets them too;
/// one already recorded (by serial) is left alone. Returns the names recorded now.
pub(crate) fn record_own_certificates(
    store: &dyn Store,
    data: &DataDir,
    now: crate::ca::UnixTime,
) -> Result<Vec<Certname>, AppError> {
    use crate::store::{IssueOutcome, RequestRecord, RequestState, SubmitIssueOutcome, SubmitRule};
    let env = EnvName::production();
    let mut recorded = Vec::new();
    for (cert_path, key_path) in [
        (data.admin_cert(), data.admin_key()),
        (data.server_cert(), data.server_key()),
    ] {
        if !cert_path.is_file() {
            // A node that joined through the vault has no admin identity of its own.
            continue;
        }
        let der = openssl::x509::X509::from_pem(&data.read(&cert_path)?)
            .and_then(|c| c.to_der())
            .map_err(crate::ca::CaError::from)?;
        let record = super::certificates::cert_record(&der, now)?;
        if store.certname_by_serial(&env, &record.serial)?.is_some() {
            continue;
        }
        let info = crate::ca::CertInfo::from_der(&der)?;
        let Some(name) = info
            .common_name
            .as_deref()
            .and_then(|cn| Certname::parse(cn).ok())
        else {
            continue;
        };
        // The request a certificate is recorded with: a CSR from the same key.
        let key = crate::ca::PrivateKey::from_pem(&data.read_secret(&key_path)?)?;
        let csr = openssl::x509::X509Req::from_pem(&crate::ca::build_csr(&key, &name, &[])?)
            .and_then(|r| r.to_der())
            .map_err(crate::ca::CaError::from)?;
        let rec = RequestRecord {
            csr_der: csr,
            submitted_at: now,
            state: RequestState::Requested,
            dns_names: Vec::new(),
            ip_addrs: Vec::new(),
            order: None,
        };
        let rule = SubmitRule {
            allow_if_signed: false,
            replace_pending: true,
            new_only: false,
        };
        match store.submit_issued(&env, &name, &rec, rule, &record)? {
            SubmitIssueOutcome::Stored(_, IssueOutcome::Issued) => recorded.push(name),
            other => tracing::warn!(
                certname = %name,
                outcome = ?other,
                "certd's own certificate could not be recorded: another certificate holds its name; revoke that one"
            ),
        }
    }
    Ok(recorded)
}

/// Records the environment in the store and gives it its first (empty) CRL, unless
/// both exist already.
pub(crate) fn ensure_env_in_store(
    store: &dyn Store,
    data: &DataDir,
    config: &Config,
    env: &EnvName,
    clock: &dyn Clock,
) -> Result<(), AppError> {
    let now = clock.now();
    if !store.environments()?.iter().any(|(name, _)| name == env) {
        store.put_environment(
            env,
            &EnvRecord {
                created_at: now,
                settings: None,
            },
            now,
        )?;
    }
    if store.crl(env)?.is_none() {
        let ca = CaPair::from_pem(
            &data.read(&data.env_cert(env))?,
            &data.read_ca_key(CaKey::Issuing(env))?,
        )?;
        let params = CrlParams {
            number: 0,
            this_update: now,
            next_update: now + config.ca.crl_next_update.as_secs(),
        };
        let der = build_crl(&ca, &[], &params)?;
        store.put_crl(
            env,
            &CrlRecord {
                number: 0,
                this_update: now,
                next_update: params.next_update,
                entries: 0,
                der,
            },
        )?;
    }
    Ok(())
}
