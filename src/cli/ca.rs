//! `certd ca ...`: the admin command line. It talks HTTPS to the running server (sled
//! allows one process) with the admin credentials of the data directory.
//!
//! Exit codes: 0 everything done; 1 the server could not be reached or failed; 3 a name
//! was not found; 4 the server refused (conflict, invalid input). With several names,
//! every name is tried and the highest code is returned.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{AdminClient, Answer};
use crate::ca::{build_csr, Certname, KeyType};
use crate::store::write_file;

/// `certd ca` options and command.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// Server base URL [default: https://localhost:<port of the configured listen address>]
    #[arg(long, global = true)]
    server: Option<String>,
    /// Environment to act in
    #[arg(long, global = true, default_value = "production")]
    env: String,
    /// Print JSON for scripts instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// List pending requests (or every name with --all, or one state)
    List {
        /// Every name, whatever its state
        #[arg(long, conflicts_with = "state")]
        all: bool,
        /// Only names in this state: requested, signed, revoked, invalid
        #[arg(long)]
        state: Option<String>,
        /// Only names matching this glob (`*`, `?`)
        #[arg(long)]
        certname: Option<String>,
    },
    /// Sign pending requests
    Sign {
        /// Certnames
        #[arg(required = true)]
        names: Vec<String>,
        /// Validity in seconds (default: the environment's)
        #[arg(long)]
        ttl: Option<i64>,
    },
    /// Revoke certificates
    Revoke {
        /// Certnames
        #[arg(required = true)]
        names: Vec<String>,
        /// RFC 5280 reason, e.g. keyCompromise
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke (if valid) and forget certificates and requests
    Clean {
        /// Certnames
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Reject pending requests
    Reject {
        /// Certnames
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show the full status of a name
    Status {
        /// Certname
        name: String,
    },
    /// Print a certificate's fingerprint
    Fingerprint {
        /// Certname (`ca` for the issuing CA)
        name: String,
        /// md5, sha1, sha224, sha256, sha384 or sha512 (default: the server's)
        #[arg(long)]
        digest: Option<String>,
    },
    /// Generate a key here, have the server sign a certificate for it, and write both
    Generate {
        /// Certname
        name: String,
        /// Extra DNS names (the environment must allow subject alt names)
        #[arg(long, value_delimiter = ',')]
        dns_alt_names: Vec<String>,
        /// Key type
        #[arg(long, default_value = "ec-p256")]
        key_type: KeyType,
        /// Where NAME.key (mode 0600) and NAME.pem are written
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
}

/// Exit codes, ordered by severity.
const OK: u8 = 0;
const NOT_FOUND: u8 = 3;
const REFUSED: u8 = 4;

struct Ctx {
    client: AdminClient,
    json: bool,
}

impl Ctx {
    /// Reports one name's outcome; returns its exit code.
    fn report(&self, verb: &str, name: &str, answer: Answer) -> u8 {
        let (code, ok, detail) = match answer {
            Answer::Ok(_) => (OK, true, String::new()),
            Answer::NotFound(d) => (NOT_FOUND, false, d),
            Answer::Refused(s, c, d) => (REFUSED, false, format!("{d} ({s} {c})")),
        };
        if self.json {
            println!(
                "{}",
                serde_json::json!({"name": name, "action": verb, "ok": ok, "error": if ok { Value::Null } else { Value::from(detail.clone()) }})
            );
        } else if ok {
            println!("{verb} {name}");
        } else {
            eprintln!("certd ca: {name}: {detail}");
        }
        code
    }
}

/// Runs `certd ca ...`; returns the exit code.
pub fn run(args: CaArgs, data: &crate::store::DataDir, listen_port: u16) -> anyhow::Result<u8> {
    let base = args
        .server
        .clone()
        .unwrap_or_else(|| format!("https://localhost:{listen_port}"));
    let ctx = Ctx {
        client: AdminClient::new(data, base, args.env.clone())?,
        json: args.json,
    };
    let c = &ctx.client;
    match args.command {
        CaCommand::List {
            all,
            state,
            certname,
        } => list(&ctx, all, state, certname),
        CaCommand::Sign { names, ttl } => Ok(each(&names, |n| {
            let req = match ttl {
                Some(t) => c
                    .http()
                    .post(c.url("certificate/"))
                    .json(&serde_json::json!({"certname": n, "ttl": t})),
                None => c.http().post(c.url("certificate/")).body(n.to_owned()),
            };
            Ok(ctx.report("signed", n, c.send(req)?))
        })?),
        CaCommand::Revoke { names, reason } => Ok(each(&names, |n| {
            let mut req = c.http().delete(c.url(&format!("certificate/{n}")));
            if let Some(r) = &reason {
                req = req.query(&[("reason", r)]);
            }
            Ok(ctx.report("revoked", n, c.send(req)?))
        })?),
        CaCommand::Clean { names } => Ok(each(&names, |n| {
            Ok(ctx.report(
                "cleaned",
                n,
                c.send(c.http().delete(c.url(&format!("certificate_status/{n}"))))?,
            ))
        })?),
        CaCommand::Reject { names } => Ok(each(&names, |n| {
            Ok(ctx.report(
                "rejected",
                n,
                c.send(c.http().delete(c.url(&format!("certificate_request/{n}"))))?,
            ))
        })?),
        CaCommand::Status { name } => status(&ctx, &name),
        CaCommand::Fingerprint { name, digest } => {
            let accept = match &digest {
                Some(d) => format!("x-cert/fingerprint;digest={d}"),
                None => "x-cert/fingerprint".to_owned(),
            };
            match c.send(
                c.http()
                    .get(c.url(&format!("certificate/{name}")))
                    .header("accept", accept),
            )? {
                Answer::Ok(resp) => {
                    let digest = resp
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split("digest=").nth(1))
                        .unwrap_or("")
                        .to_owned();
                    let fp = resp.text()?.trim().to_owned();
                    if ctx.json {
                        println!(
                            "{}",
                            serde_json::json!({"name": name, "digest": digest, "fingerprint": fp})
                        );
                    } else {
                        println!("{name} ({digest}) {fp}");
                    }
                    Ok(OK)
                }
                other => Ok(ctx.report("fingerprint", &name, other)),
            }
        }
        CaCommand::Generate {
            name,
            dns_alt_names,
            key_type,
            out_dir,
        } => generate(&ctx, &name, &dns_alt_names, key_type, &out_dir),
    }
}

/// Runs `f` for every name, returning the highest exit code.
fn each(names: &[String], mut f: impl FnMut(&str) -> anyhow::Result<u8>) -> anyhow::Result<u8> {
    let mut worst = OK;
    for n in names {
        worst = worst.max(f(n)?);
    }
    Ok(worst)
}

fn list(
    ctx: &Ctx,
    all: bool,
    state: Option<String>,
    certname: Option<String>,
) -> anyhow::Result<u8> {
    let c = &ctx.client;
    let mut query: Vec<(&str, String)> = Vec::new();
    match (all, state) {
        (true, _) => {}
        (false, Some(s)) => query.push(("state", s)),
        (false, None) => query.push(("state", "requested".into())),
    }
    let mut items: Vec<Value> = Vec::new();
    let mut req = c.http().get(c.url("certificate_statuses/*")).query(&query);
    if let Some(g) = &certname {
        req = req.query(&[("certname", g)]);
    }
    loop {
        let resp = match c.send(req)? {
            Answer::Ok(r) => r,
            other => return Ok(ctx.report("listed", &c.env, other)),
        };
        let next = resp
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| {
                l.strip_prefix('<')
                    .and_then(|l| l.split_once('>'))
                    .map(|(u, _)| u.to_owned())
            });
        items.extend(
            resp.json::<Vec<Value>>()
                .context("the listing is not JSON")?,
        );
        match next {
            Some(path) => req = c.http().get(c.absolute(&path)),
            None => break,
        }
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else if items.is_empty() {
        println!("no names{}", if all { "" } else { " in that state" });
    } else {
        let width = items
            .iter()
            .filter_map(|i| i["name"].as_str())
            .map(str::len)
            .max()
            .unwrap_or(0);
        for i in &items {
            let alt = i["dns_alt_names"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            // Why a request is invalid (refused by the policy, rejected) or failed.
            let why = i["error_message"]
                .as_str()
                .map(|m| format!("  ({m})"))
                .unwrap_or_default();
            println!(
                "{:<width$}  {:<9}  {}  {}{why}",
                i["name"].as_str().unwrap_or(""),
                i["state"].as_str().unwrap_or(""),
                i["fingerprint"].as_str().unwrap_or(""),
                alt
            );
        }
    }
    Ok(OK)
}

fn status(ctx: &Ctx, name: &str) -> anyhow::Result<u8> {
    let c = &ctx.client;
    match c.send(c.http().get(c.url(&format!("certificate_status/{name}"))))? {
        Answer::Ok(resp) => {
            let v: Value = resp.json()?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for key in [
                    "name",
                    "environment",
                    "state",
                    "fingerprint",
                    "serial_number",
                    "not_before",
                    "not_after",
                    "revoked_at",
                    "revocation_reason",
                    "error_message",
                ] {
                    if let Some(s) = v[key].as_str() {
                        println!("{key:<18} {s}");
                    }
                }
                if let Some(a) = v["subject_alt_names"].as_array() {
                    println!(
                        "{:<18} {}",
                        "subject_alt_names",
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            Ok(OK)
        }
        other => Ok(ctx.report("status", name, other)),
    }
}

fn generate(
    ctx: &Ctx,
    raw: &str,
    dns: &[String],
    key_type: KeyType,
    out_dir: &std::path::Path,
) -> anyhow::Result<u8> {
    let c = &ctx.client;
    let name = Certname::parse(raw)?;
    let key = key_type.generate()?;
    let csr = build_csr(&key, &name, dns)?;
    match c.send(
        c.http()
            .put(c.url(&format!("certificate_request/{name}")))
            .header("content-type", "application/x-pem-file")
            .body(csr),
    )? {
        Answer::Ok(_) => {}
        other => return Ok(ctx.report("generated", raw, other)),
    }
    match c.send(c.http().post(c.url("certificate/")).body(name.to_string()))? {
        Answer::Ok(_) => {}
        other => return Ok(ctx.report("generated", raw, other)),
    }
    let pem = match c.send(
        c.http()
            .get(c.url(&format!("certificate/{name}")))
            .header("accept", "application/x-pem-file"),
    )? {
        Answer::Ok(resp) => resp.bytes()?.to_vec(),
        other => return Ok(ctx.report("generated", raw, other)),
    };
    let key_path = out_dir.join(format!("{name}.key"));
    let cert_path = out_dir.join(format!("{name}.pem"));
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    write_file(&key_path, &key.to_pem()?, 0o600)?;
    write_file(&cert_path, &pem, 0o644)?;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"name": name.as_str(), "action": "generated", "ok": true, "key": key_path, "certificate": cert_path})
        );
    } else {
        println!(
            "generated {name}: key {} certificate {}",
            key_path.display(),
            cert_path.display()
        );
    }
    Ok(OK)
}
