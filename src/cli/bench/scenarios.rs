//! The scenarios: untimed preparation (keys, CSRs, certificates to list or revoke), then
//! timed runs driven by a fixed number of client threads.

use std::time::Duration;

use anyhow::{bail, Context};

use super::{pool, BenchArgs, Conn, Endpoint, Face, RunStats, Scenario, Target};
use crate::ca::{build_csr, Certname, KeyType, PrivateKey};

/// The run number of the warm-up (`--warmup`), before run 1; it is not counted.
pub const WARMUP: usize = 0;

/// What a target needs for its timed runs.
pub struct Prepared {
    /// issue: CSRs (name, PEM) for the warm-up and every run, indexed by run number
    /// (the warm-up's, [`WARMUP`], empty without `--warmup`).
    csrs: Vec<Vec<(String, Vec<u8>)>>,
    /// probe: the certificate fetched.
    probe_name: String,
    /// revoke: names to revoke, indexed by run number (the warm-up's slot empty: revoke
    /// has none).
    to_revoke: Vec<Vec<String>>,
}

fn tag() -> String {
    let mut b = [0u8; 4];
    // A run tag only: without OpenSSL's randomness, the process id will do.
    if openssl::rand::rand_bytes(&mut b).is_err() {
        b = std::process::id().to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn agent_keys(kind: &str, n: usize) -> anyhow::Result<Vec<PrivateKey>> {
    let kt: KeyType = kind
        .parse()
        .map_err(|e| anyhow::anyhow!("--agent-key: {e}"))?;
    let distinct = if matches!(kt, KeyType::EcP256 | KeyType::EcP384 | KeyType::Ed25519) {
        n
    } else {
        n.min(16)
    };
    (0..distinct.max(1))
        .map(|_| kt.generate().map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}

fn csrs(args: &BenchArgs, prefix: &str, n: usize) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let keys = agent_keys(&args.agent_key, n)?;
    (0..n)
        .map(|i| {
            let name = format!("{prefix}-{i}");
            let cn = Certname::parse(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
            let pem =
                build_csr(&keys[i % keys.len()], &cn, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((name, pem))
        })
        .collect()
}

/// One agent's bootstrap: submit the CSR, fetch the certificate (autosign on the server).
fn bootstrap(conn: &mut Conn, e: &Endpoint, name: &str, csr: &[u8]) -> anyhow::Result<()> {
    let r = conn.request(
        "PUT",
        &e.path("certificate_request", name),
        &[("Content-Type", "text/plain")],
        csr,
    )?;
    if !(200..300).contains(&r.status) {
        bail!(
            "submit {name}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = conn.request(
        "GET",
        &e.path("certificate", name),
        &[("Accept", "text/plain")],
        b"",
    )?;
    if r.status != 200 {
        bail!("fetch {name}: {} (is autosign on?)", r.status);
    }
    Ok(())
}

/// Runs `work(conn, i)` for i in 0..n on `threads` threads, each with a connection from
/// `target` (reopened when the server closes it, or per item with `fresh`), until done
/// or `limit`. Returns (latencies, errors, elapsed).
fn drive(
    target: &Target,
    n: usize,
    threads: usize,
    fresh: bool,
    limit: Duration,
    work: impl Fn(&mut Conn, usize) -> anyhow::Result<()> + Sync,
) -> (Vec<Duration>, usize, Duration) {
    let done = pool(
        n,
        threads,
        limit,
        || None::<Conn>,
        |conn, i| {
            let c = match conn {
                Some(c) if !fresh && !c.closed() => c,
                _ => conn.insert(target.connect()?),
            };
            let result = work(c, i);
            if fresh || result.is_err() {
                *conn = None;
            }
            result
        },
    );
    if let Some(e) = done.first_error {
        eprintln!("bench: first error: {e}");
    }
    (done.lat, done.errors, done.elapsed)
}

/// Issues `names` (untimed), keep-alive, with the run's concurrency.
fn populate(args: &BenchArgs, e: &Endpoint, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    eprintln!("bench: {}: issuing {n} certificates first (untimed)", e.url);
    let list = csrs(args, prefix, n)?;
    let (_, errors, took) = drive(
        &e.anon,
        n,
        args.concurrency,
        false,
        Duration::from_secs(3600),
        |c, i| bootstrap(c, e, &list[i].0, &list[i].1),
    );
    if errors > 0 {
        bail!("{errors} of {n} certificates could not be issued while populating");
    }
    eprintln!("bench: {}: issued {n} in {:.1}s", e.url, took.as_secs_f64());
    Ok(list.into_iter().map(|(n, _)| n).collect())
}

fn clean(e: &Endpoint, conn: &mut Conn, names: &[String]) -> anyhow::Result<()> {
    if e.face != Face::Puppet {
        bail!("bulk revocation uses Puppet's PUT /clean: give the target face=puppet");
    }
    let body = serde_json::json!({ "certnames": names }).to_string();
    let r = conn.request(
        "PUT",
        "/puppet-ca/v1/clean",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )?;
    if !(200..300).contains(&r.status) {
        bail!("clean: {} {}", r.status, String::from_utf8_lossy(&r.body));
    }
    Ok(())
}

/// Untimed preparation of one target.
pub fn prepare(args: &BenchArgs, e: &Endpoint) -> anyhow::Result<Prepared> {
    // The timed connections do not check the server's chain; check it here, once.
    for target in [&e.anon, &e.admin] {
        target
            .connect_verified()
            .with_context(|| format!("{}: checking the server's certificate chain", e.url))?;
    }
    let t = tag();
    let mut p = Prepared {
        csrs: Vec::new(),
        probe_name: String::new(),
        to_revoke: Vec::new(),
    };
    match args.scenario {
        Scenario::Issue => {
            p.csrs.push(if args.warmup > 0 {
                csrs(args, &format!("bench-{t}-warm"), args.warmup)?
            } else {
                Vec::new()
            });
            for run in 1..=args.runs {
                p.csrs
                    .push(csrs(args, &format!("bench-{t}-r{run}"), args.count)?);
            }
        }
        Scenario::Probe => {
            p.probe_name = match &args.probe_name {
                Some(name) => name.clone(),
                None => populate(args, e, &format!("bench-{t}-probe"), 1)?.remove(0),
            };
        }
        Scenario::List => {
            populate(args, e, &format!("bench-{t}-list"), args.populate)?;
        }
        Scenario::Revoke => {
            if args.populate > 0 {
                let gone = populate(args, e, &format!("bench-{t}-gone"), args.populate)?;
                let mut c = e.admin.connect()?;
                for chunk in gone.chunks(10_000) {
                    clean(e, &mut c, chunk).context("revoking the populated certificates")?;
                }
            }
            p.to_revoke.push(Vec::new());
            for run in 1..=args.runs {
                p.to_revoke
                    .push(populate(args, e, &format!("bench-{t}-r{run}"), args.count)?);
            }
        }
        Scenario::Crl | Scenario::Sign => {}
    }
    Ok(p)
}

/// One timed run (run [`WARMUP`]: the warm-up, `--warmup` operations).
pub fn timed_run(
    args: &BenchArgs,
    e: &Endpoint,
    p: &mut Prepared,
    run: usize,
) -> anyhow::Result<RunStats> {
    let limit = Duration::from_secs(args.max_seconds);
    let c = args.concurrency;
    let count = if run == WARMUP {
        args.warmup
    } else {
        args.count
    };
    let ok = |status: u16| -> anyhow::Result<()> {
        if (200..300).contains(&status) {
            Ok(())
        } else {
            bail!("status {status}")
        }
    };
    let (name, (lat, errors, elapsed)) = match args.scenario {
        Scenario::Issue => {
            let list = &p.csrs[run];
            let name = if args.new_connection {
                "issue/new"
            } else {
                "issue/ka"
            };
            (
                name,
                drive(
                    &e.anon,
                    list.len(),
                    c,
                    args.new_connection,
                    limit,
                    |conn, i| bootstrap(conn, e, &list[i].0, &list[i].1),
                ),
            )
        }
        Scenario::Probe => {
            let target = if args.with_client_cert {
                &e.admin
            } else {
                &e.anon
            };
            let path = e.path("certificate", &p.probe_name);
            let method = if args.head { "HEAD" } else { "GET" };
            (
                if args.head { "head" } else { "get" },
                drive(target, count, c, false, limit, |conn, _| {
                    ok(conn
                        .request(method, &path, &[("Accept", "text/plain")], b"")?
                        .status)
                }),
            )
        }
        Scenario::Crl => {
            let path = e.path("certificate_revocation_list", "ca");
            (
                "crl",
                drive(&e.anon, count, c, false, limit, |conn, _| {
                    ok(conn
                        .request("GET", &path, &[("Accept", "text/plain")], b"")?
                        .status)
                }),
            )
        }
        Scenario::List => (
            "list",
            drive(&e.admin, count, c, false, limit, |conn, _| {
                list_all(conn, e)
            }),
        ),
        Scenario::Revoke if args.bulk => {
            let names = &p.to_revoke[run];
            (
                "clean",
                drive(&e.admin, 1, 1, false, limit, |conn, _| {
                    clean(e, conn, names)
                }),
            )
        }
        Scenario::Sign => bail!("the sign scenario runs without a server"),
        Scenario::Revoke => {
            let names = &p.to_revoke[run];
            (
                "revoke",
                drive(&e.admin, names.len(), c, false, limit, |conn, i| {
                    let r = match e.face {
                        Face::Native => {
                            conn.request("DELETE", &e.path("certificate", &names[i]), &[], b"")?
                        }
                        Face::Puppet => conn.request(
                            "PUT",
                            &e.path("certificate_status", &names[i]),
                            &[("Content-Type", "application/json")],
                            br#"{"desired_state":"revoked"}"#,
                        )?,
                    };
                    ok(r.status)
                }),
            )
        }
    };
    Ok(RunStats::new(name, &e.url, run, c, elapsed, lat, errors))
}

/// Every status: Puppet's `certificate_statuses/any` in one answer; the native face page
/// by page (`after=` the last name).
fn list_all(conn: &mut Conn, e: &Endpoint) -> anyhow::Result<()> {
    match e.face {
        Face::Puppet => {
            // Read to the end but not kept: it must start with `[` and end with `]`.
            let (mut len, mut first, mut last) = (0usize, None, None);
            let status = conn.request_streamed(
                "GET",
                "/puppet-ca/v1/certificate_statuses/any",
                &[("Accept", "application/json")],
                b"",
                &mut |part| {
                    len += part.len();
                    first = first.or(part.first().copied());
                    last = part.last().copied().or(last);
                },
            )?;
            if status != 200 {
                bail!("list: {status}");
            }
            if (first, last) != (Some(b'['), Some(b']')) {
                bail!("list: {len} bytes that do not start with [ and end with ]");
            }
            Ok(())
        }
        Face::Native => {
            let mut after = String::new();
            loop {
                let mut path = format!("/{}/certificate_statuses/*?limit=1000", e.env);
                if !after.is_empty() {
                    path.push_str("&after=");
                    path.push_str(&after);
                }
                let r = conn.request("GET", &path, &[("Accept", "application/json")], b"")?;
                if r.status != 200 {
                    bail!("list: {}", r.status);
                }
                let page: Vec<serde_json::Value> = serde_json::from_slice(&r.body)?;
                match page.last().and_then(|v| v["name"].as_str()) {
                    Some(last) if page.len() == 1000 => after = last.to_owned(),
                    _ => return Ok(()),
                }
            }
        }
    }
}
