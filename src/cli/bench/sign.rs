//! `certd bench sign`: the signing rate of the OpenSSL certd is linked with, on this
//! machine, with no server, TLS or store around it. It is the ceiling issuance with a
//! CA key of that type is compared with. `openssl speed` measures the system's libcrypto,
//! which need not be the one certd links (the default build links OpenSSL built from
//! source; see `manual::choices`).

use std::time::Duration;

use anyhow::anyhow;
use openssl::hash::MessageDigest;
use openssl::sign::Signer;

use super::{median, pool, BenchArgs, RunStats};
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
        let done = pool(
            args.count,
            args.concurrency,
            limit,
            || (),
            |_, _| {
                match md {
                    Some(md) => Signer::new(md, key.pkey()),
                    None => Signer::new_without_digest(key.pkey()),
                }
                .and_then(|mut s| s.sign_oneshot_to_vec(&message))
                .map(drop)
                .map_err(|e| anyhow!("{e}"))
            },
        );
        if let Some(e) = done.first_error {
            anyhow::bail!("signing with {kt}: {e}");
        }
        let stats = RunStats::new(
            &label,
            library,
            run,
            args.concurrency,
            done.elapsed,
            done.lat,
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
