//! `certd bench`: a load generator for any server speaking certd's native face or
//! Puppet's CA API (so Puppet Server can be measured the same way, in the same run).
//!
//! Scenarios: `issue` (pre-generated CSRs: submit, then fetch the autosigned
//! certificate; a new TLS connection per agent or keep-alive), `probe` (GET or HEAD of a
//! certificate over keep-alive connections), `list` (all statuses), `revoke` (one by one,
//! or one bulk clean), `crl`; and `sign`, the linked OpenSSL's own signing rate with no
//! server at all (the ceiling issuance is measured against). Every phase is bounded by
//! `--count` and `--max-seconds`, prints throughput and p50/p90/p99/max, and can append
//! JSON lines. With two `--target`s the same scenario runs against each in turn, run
//! after run (each run starting with the next target), and the ratio of the medians is
//! printed. The chain of each target is
//! checked once before timing; the timed connections do not check it again
//! (`Target::connect`).

mod conn;
mod scenarios;
mod sign;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

pub use conn::{Conn, Target};

/// Which API a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Face {
    /// certd's `/{env}/...` resources.
    Native,
    /// `/puppet-ca/v1/...` (Puppet Server, or certd's Puppet face).
    Puppet,
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Agents submit a CSR and fetch their (autosigned) certificate.
    Issue,
    /// GET (or HEAD) one certificate over keep-alive connections.
    Probe,
    /// List every status (admin).
    List,
    /// Revoke certificates one by one (or `--bulk`: one clean of them all).
    Revoke,
    /// Fetch the CRL.
    Crl,
    /// No server: sign with a `--sign-key` key on `--concurrency` threads, to measure the
    /// linked OpenSSL's ceiling (what `openssl speed` measures for the system's).
    Sign,
}

/// `certd bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// A server: `URL[,face=native|puppet][,env=NAME][,ca=FILE][,cert=FILE][,key=FILE]
    /// [,nodes=PORT:PORT...]`. `nodes`: the other nodes of a cluster on the URL's host,
    /// each new connection going to the next node in turn. Give two or more to compare
    /// them (a ratio is printed for each but the last: it / the last). Without ca/cert/key, `--data-dir`'s production
    /// chain and admin identity are used. Every scenario but `sign` needs one.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Data directory whose CA chain and admin certificate to use by default.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Requests (issue: agents) per run.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Timed runs (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// A run stops after this long even if `--count` is not reached.
    #[arg(long, default_value_t = 60)]
    pub max_seconds: u64,
    /// issue, probe, crl, list: operations (issue: agents) sent to each target before its
    /// first timed run, not counted in any figure, so that a JVM (Puppet Server's) is
    /// compared after its JIT has settled. Bounded by `--max-seconds` like a run.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// issue: a new TLS connection per agent (as agents bootstrap) instead of keep-alive.
    #[arg(long)]
    pub new_connection: bool,
    /// probe: HEAD instead of GET.
    #[arg(long)]
    pub head: bool,
    /// probe: fetch this existing certificate instead of issuing one first (to compare
    /// servers that each hold it, for instance independent copies of one installation).
    #[arg(long)]
    pub probe_name: Option<String>,
    /// probe: present the client certificate (default: anonymous).
    #[arg(long)]
    pub with_client_cert: bool,
    /// list/revoke: certificates to create first (untimed); revoke: revoked ones.
    #[arg(long, default_value_t = 0)]
    pub populate: usize,
    /// revoke: one bulk clean (Puppet's `PUT /clean`) of `--count` certificates.
    #[arg(long)]
    pub bulk: bool,
    /// Agents' key type: ec-p256 (default), rsa-2048 or rsa-4096. Keys are made before
    /// timing; RSA keys are reused across CSRs (16 of them) so that setup stays short.
    #[arg(long, default_value = "ec-p256")]
    pub agent_key: String,
    /// sign: the key type signed with (the CA's): rsa-4096 (default), rsa-2048, ec-p256...
    #[arg(long, default_value = "rsa-4096")]
    pub sign_key: String,
    /// Append one JSON line per run here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One target, parsed.
#[derive(Clone)]
pub struct Endpoint {
    /// The URL as given.
    pub url: String,
    /// Its API.
    pub face: Face,
    /// The environment (native face).
    pub env: String,
    /// Anonymous connections.
    pub anon: Target,
    /// Connections with the admin identity.
    pub admin: Target,
}

impl Endpoint {
    /// Path of a resource under the target's face.
    pub fn path(&self, resource: &str, name: &str) -> String {
        match self.face {
            Face::Native => format!("/{}/{resource}/{name}", self.env),
            Face::Puppet => format!("/puppet-ca/v1/{resource}/{name}"),
        }
    }
}

fn parse_target(spec: &str, data_dir: Option<&PathBuf>) -> anyhow::Result<Endpoint> {
    let mut parts = spec.split(',');
    let url = parts.next().unwrap_or_default().to_owned();
    let rest = url
        .strip_prefix("https://")
        .with_context(|| format!("{url}: an https:// URL"))?;
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = hostport
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.parse::<u16>()))
        .with_context(|| format!("{url}: host:port"))?;
    let port = port.with_context(|| format!("{url}: port"))?;
    let mut face = Face::Native;
    let mut env = "production".to_owned();
    let mut ca = data_dir.map(|d| d.join("ca/production/chain.pem"));
    let mut cert = data_dir.map(|d| d.join("admin/admin.pem"));
    let mut key = data_dir.map(|d| d.join("admin/admin.key"));
    let mut more_ports = Vec::new();
    for p in parts {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("{p}: key=value"))?;
        match k {
            "face" => face = Face::from_str(v, true).map_err(|e| anyhow::anyhow!("face: {e}"))?,
            "env" => env = v.to_owned(),
            "ca" => ca = Some(PathBuf::from(v)),
            "cert" => cert = Some(PathBuf::from(v)),
            "key" => key = Some(PathBuf::from(v)),
            "nodes" => {
                more_ports = v
                    .split(':')
                    .map(|p| p.parse::<u16>())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("nodes={v}: ports separated by ':'"))?
            }
            other => bail!("unknown target option {other}"),
        }
    }
    let identity = match (&cert, &key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        _ => None,
    };
    Ok(Endpoint {
        anon: Target::new(&host, port, ca.as_deref(), None)?.with_more_ports(&more_ports),
        admin: Target::new(&host, port, ca.as_deref(), identity)?.with_more_ports(&more_ports),
        url,
        face,
        env,
    })
}

/// The figures of one timed run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunStats {
    /// Scenario name.
    pub scenario: String,
    /// The target URL.
    pub target: String,
    /// Run number, from 1.
    pub run: usize,
    /// Operations completed.
    pub n: usize,
    /// Operations that failed (non-2xx or I/O).
    pub errors: usize,
    /// Concurrency.
    pub concurrency: usize,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
    /// Operations per second.
    pub rate: f64,
    /// Latency percentiles and maximum, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl RunStats {
    /// Figures from per-operation latencies.
    pub fn new(
        scenario: &str,
        target: &str,
        run: usize,
        concurrency: usize,
        elapsed: Duration,
        mut lat: Vec<Duration>,
        errors: usize,
    ) -> RunStats {
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i].as_secs_f64() * 1000.0
        };
        RunStats {
            scenario: scenario.into(),
            target: target.into(),
            run,
            n: lat.len(),
            errors,
            concurrency,
            elapsed_s: elapsed.as_secs_f64(),
            rate: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
            max_ms: pct(1.0),
        }
    }

    pub(super) fn print(&self) {
        println!(
            "{:<8} {:<32} run {} n={:<7} err={:<4} c={:<3} {:>8.3}s {:>10.1}/s  p50 {:>8.2}ms  p90 {:>8.2}ms  p99 {:>8.2}ms  max {:>8.2}ms",
            self.scenario, self.target, self.run, self.n, self.errors, self.concurrency,
            self.elapsed_s, self.rate, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        );
    }
}

/// What [`pool`] measured.
pub(super) struct Pooled {
    /// One latency per item that succeeded.
    pub lat: Vec<Duration>,
    /// Items that failed.
    pub errors: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Wall-clock time of the whole.
    pub elapsed: Duration,
}

/// Runs `work(state, i)` for i in 0..n on `threads` threads, each with its own state
/// from `init`, timing each item, until all are done or `limit` has passed.
pub(super) fn pool<S>(
    n: usize,
    threads: usize,
    limit: Duration,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize) -> anyhow::Result<()> + Sync,
) -> Pooled {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::with_capacity(n));
    let first_error = Mutex::new(None::<String>);
    let start = std::time::Instant::now();
    let deadline = start + limit;
    std::thread::scope(|s| {
        for _ in 0..threads.min(n) {
            s.spawn(|| {
                let mut state = init();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || std::time::Instant::now() >= deadline {
                        break;
                    }
                    let t = std::time::Instant::now();
                    match work(&mut state, i) {
                        Ok(()) => mine.push(t.elapsed()),
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(format!("{e:#}"));
                        }
                    }
                }
                lat.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            });
        }
    });
    Pooled {
        lat: lat.into_inner().unwrap_or_else(|p| p.into_inner()),
        errors: errors.into_inner(),
        first_error: first_error.into_inner().unwrap_or_else(|p| p.into_inner()),
        elapsed: start.elapsed(),
    }
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// Runs `certd bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<u8> {
    if args.count == 0 || args.concurrency == 0 || args.runs == 0 {
        bail!("--count, --concurrency and --runs must be positive");
    }
    if args.scenario == Scenario::Sign {
        return sign::run(args);
    }
    if args.targets.is_empty() {
        bail!("give a --target (or two or more to compare)");
    }
    if args.warmup > 0 && matches!(args.scenario, Scenario::Revoke) {
        bail!("--warmup is for issue, probe, crl and list");
    }
    let endpoints = args
        .targets
        .iter()
        .map(|t| parse_target(t, args.data_dir.as_ref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut json = match &args.json {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        None => None,
    };
    let mut per_target: Vec<Vec<RunStats>> = vec![Vec::new(); endpoints.len()];
    let mut prepared: Vec<scenarios::Prepared> = endpoints
        .iter()
        .map(|e| scenarios::prepare(args, e))
        .collect::<anyhow::Result<_>>()?;
    let mut warmup_errors = 0;
    if args.warmup > 0 {
        for (i, e) in endpoints.iter().enumerate() {
            eprintln!(
                "bench: {}: warming up with {} (not counted)",
                e.url, args.warmup
            );
            let stats = scenarios::timed_run(args, e, &mut prepared[i], scenarios::WARMUP)?;
            eprintln!(
                "bench: {}: warm-up done: {} in {:.1}s ({:.1}/s), {} errors",
                e.url, stats.n, stats.elapsed_s, stats.rate, stats.errors
            );
            warmup_errors += stats.errors;
        }
    }
    for run in 1..=args.runs {
        // Alternate the targets run by run, so that drift on a shared machine hits both,
        // each run starting with the next target: of two certd builds against one sled,
        // swapped between invocations, the later target measured 2–4% faster on average.
        let n = endpoints.len();
        for i in (0..n).map(|k| (k + run - 1) % n) {
            let e = &endpoints[i];
            let stats = scenarios::timed_run(args, e, &mut prepared[i], run)?;
            stats.print();
            if let Some(f) = json.as_mut() {
                use std::io::Write;
                writeln!(f, "{}", serde_json::to_string(&stats)?)?;
            }
            per_target[i].push(stats);
        }
    }
    for (e, runs) in endpoints.iter().zip(&per_target) {
        println!(
            "median   {:<32} {:>10.1}/s  p50 {:>8.2}ms  p99 {:>8.2}ms  ({} runs)",
            e.url,
            median(runs.iter().map(|r| r.rate).collect()),
            median(runs.iter().map(|r| r.p50_ms).collect()),
            median(runs.iter().map(|r| r.p99_ms).collect()),
            runs.len()
        );
    }
    if let Some((last, others)) = per_target.split_last() {
        let b = median(last.iter().map(|r| r.rate).collect());
        for (i, runs) in others.iter().enumerate() {
            let a = median(runs.iter().map(|r| r.rate).collect());
            println!(
                "ratio    {} / {} = {:.2}x throughput",
                endpoints[i].url,
                endpoints[endpoints.len() - 1].url,
                a / b.max(1e-9)
            );
        }
    }
    let errors: usize =
        warmup_errors + per_target.iter().flatten().map(|r| r.errors).sum::<usize>();
    Ok(if errors > 0 { 1 } else { 0 })
}
