//! `certd bench sign`: the signing rate of the OpenSSL certd is linked with, on this
//! machine, with no server, TLS or store around it. It is the ceiling issuance with a
//! CA key of that type is compared with. `openssl speed` measures the system's libcrypto,
//! which need not be the one certd links (the default build links OpenSSL built from
//! source; see README "Choices").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use openssl::hash::MessageDigest;
use openssl::sign::Signer;

use super::{median, BenchArgs, RunStats};
use crate::ca::KeyType;

/// Bytes signed each time: about a leaf's TBSCertificate.
const MESSAGE: usize = 1024;

/// Runs the `sign` scenario: `--runs` runs of `--count` signatures on `--concurrency`
/// threads with one `--sign-key` key, each bounded by `--max-seconds`.
pub fn run(args: &BenchArgs) -> anyhow::Result<u8> {
    let kt: KeyType = args
        .sign_key
        .parse()
        .map_err(|e| anyhow!("--sign-key: {e}"))?;
    let key = kt.generate().map_err(|e| anyhow!("{e}"))?;
    let md = match kt {
        KeyType::Ed25519 => None,
        _ => Some(MessageDigest::sha256()),
    };
    let message = vec![0x5a_u8; MESSAGE];
    let label = format!("sign {kt}");
    let library = openssl::version::version();
    let limit = Duration::from_secs(args.max_seconds);
    let mut rates = Vec::with_capacity(args.runs);
    for run in 1..=args.runs {
        let next = AtomicUsize::new(0);
        let lat = Mutex::new(Vec::with_capacity(args.count));
        let failed = Mutex::new(None::<String>);
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..args.concurrency.min(args.count) {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < args.count
                        && start.elapsed() < limit
                    {
                        let t = Instant::now();
                        let signed = match md {
                            Some(md) => Signer::new(md, key.pkey()),
                            None => Signer::new_without_digest(key.pkey()),
                        }
                        .and_then(|mut s| s.sign_oneshot_to_vec(&message));
                        if let Err(e) = signed {
                            *failed.lock().expect("error slot") = Some(e.to_string());
                            break;
                        }
                        mine.push(t.elapsed());
                    }
                    lat.lock().expect("latencies").extend(mine);
                });
            }
        });
        if let Some(e) = failed.into_inner().expect("error slot") {
            anyhow::bail!("signing with {kt}: {e}");
        }
        let stats = RunStats::new(
            &label,
            library,
            run,
            args.concurrency,
            start.elapsed(),
            lat.into_inner().expect("latencies"),
            0,
        );
        stats.print();
        rates.push(stats);
    }
    println!(
        "median   {label} with {library}, {} threads: {:.1} signatures/s",
        args.concurrency,
        median(rates.iter().map(|r| r.rate).collect())
    );
    Ok(0)
}
