//! The command line: `certd serve`, `certd setup`, `certd ca ...`. The composition root
//! lives here: `serve` builds the [`App`] once and hands it to the HTTP layer.

mod bench;
mod ca;
mod client;
mod store_copy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::app::{self, App, SetupOutcome};
use crate::ca::{OsRng, SystemClock};
use crate::config::{Config, StoreBackend};
use crate::store::{DataDir, PgStore, SealedKeys, SledStore, Store};

/// certd: a certificate authority served as plain HTTP resources.
#[derive(Debug, Parser)]
#[command(name = "certd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTPS server (setting up the data directory first if it is empty).
    Serve(ServeArgs),
    /// Create the root CA, the issuing CAs, the server and admin certificates and the
    /// store in the data directory. Changes nothing in one already set up.
    Setup(Common),
    /// Administer the running server over HTTPS with the data directory's admin
    /// certificate: list, sign, revoke, clean, reject, status, fingerprint, generate.
    Ca {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: ca::CaArgs,
    },
    /// Load-test a running server (certd, or Puppet Server's CA for comparison):
    /// issue, probe, list, revoke, crl. Prints throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// The store itself: `certd store schema [--from N]` prints the PostgreSQL schema as
    /// SQL, for a DBA to apply when certd's database user may not create or migrate
    /// tables.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Print the SQL of the PostgreSQL schema this certd uses, for a DBA to apply.
    Schema {
        /// The schema version the database holds (certd's refusal to start names it):
        /// print only the migrations after it
        #[arg(long, default_value_t = 0)]
        from: i32,
    },
    /// Copy this installation (its store, CA keys and data directory files) into an
    /// empty one described by --to-config: sled to PostgreSQL to move it, or either to
    /// sled as a backup. A sled source must not be in use by a running server; a
    /// PostgreSQL source may be (one consistent snapshot is read).
    Copy {
        #[command(flatten)]
        common: Common,
        /// The target's configuration file (its [store] section says where)
        #[arg(long)]
        to_config: PathBuf,
        /// The target's data directory [default: the target config's server.data_dir]
        #[arg(long)]
        to_data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// Configuration file [default: conf/certd.toml when present, else built-in defaults]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory [default: the config's server.data_dir, "data"]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Address to listen on, e.g. 127.0.0.1:8140 (port 0 picks a free port)
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// The shipped configuration, used when `--config` is not given and it exists.
const DEFAULT_CONFIG: &str = "conf/certd.toml";

/// How long shutdown waits for the background workers (and order calls under way).
const WORKERS_STOP: std::time::Duration = std::time::Duration::from_secs(2);

impl Common {
    fn load(&self) -> anyhow::Result<(Config, DataDir)> {
        let config = match &self.config {
            Some(path) => Config::load(path)?,
            None if Path::new(DEFAULT_CONFIG).is_file() => Config::load(Path::new(DEFAULT_CONFIG))?,
            None => Config::default(),
        };
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| config.server.data_dir.clone());
        Ok((config, DataDir::new(dir)))
    }
}

/// Parses the command line, runs it, and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("certd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The store of the data directory: the one place that names an engine. `serving`: for
/// the server, whose read lease on PostgreSQL is named by the host, the port and the data
/// directory (no two live servers share all three), so that a restarted server takes
/// its lease back at once (other commands get one of their own).
fn open_store(
    config: &Config,
    data: DataDir,
    serving: bool,
) -> anyhow::Result<(Arc<dyn Store>, DataDir)> {
    data.create()?;
    match config.store.backend {
        StoreBackend::Sled => {
            let store = SledStore::open(&data.store_dir())
                .with_context(|| format!("opening the store in {}", data.store_dir().display()))?;
            Ok((Arc::new(store), data))
        }
        // Each error names host, port, database and user (or the key file), in one line.
        StoreBackend::Postgres => {
            let store = Arc::new(if serving {
                let host = crate::config::host_name().unwrap_or_default();
                let dir = std::fs::canonicalize(data.root())
                    .unwrap_or_else(|_| data.root().to_path_buf());
                let port = config.server.listen.port();
                PgStore::open_as(&config.store, &format!("{host}:{port} {}", dir.display()))?
            } else {
                PgStore::open(&config.store)?
            });
            let key_file = config
                .store
                .key_file
                .clone()
                .unwrap_or_else(|| data.root().join("store.key"));
            let keys = SealedKeys::open(store.clone(), &key_file)?;
            Ok((store, data.with_vault(Arc::new(keys))))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Ca { common, args } => {
            let (config, data) = common.load()?;
            ca::run(args, &data, config.server.listen.port())
        }
        Command::Bench(args) => bench::run(&args),
        Command::Store {
            command: StoreCommand::Schema { from },
        } => {
            let sql = crate::store::schema_sql(from).with_context(|| {
                format!(
                    "no schema version {from} in this certd (it knows 0 to {})",
                    crate::store::PG_SCHEMA_VERSION
                )
            })?;
            print!("{sql}");
            Ok(0)
        }
        Command::Store {
            command:
                StoreCommand::Copy {
                    common,
                    to_config,
                    to_data_dir,
                },
        } => {
            let (config, data) = common.load()?;
            let (store, data) = open_store(&config, data, false).context(
                "opening the source store (a sled store must not be in use by a running certd: stop it first)",
            )?;
            let target = Common {
                config: Some(to_config),
                data_dir: to_data_dir,
            };
            let (to_config, to_data) = target.load()?;
            let (to_store, to_data) =
                open_store(&to_config, to_data, false).context("opening the target store")?;
            store_copy::run((config, data, store), (to_config, to_data, to_store))?;
            Ok(0)
        }
        Command::Setup(common) => {
            let (config, data) = common.load()?;
            let (store, data) = open_store(&config, data, false)?;
            let outcome = app::setup(&data, &config, store.as_ref(), &SystemClock, &OsRng)
                .with_context(|| format!("setting up {}", data.root().display()))?;
            match outcome {
                SetupOutcome::Created => {
                    println!("set up {}: root CA {}, issuing CAs for {}, server certificate {}, admin certificate {}",
                        data.root().display(),
                        data.root_cert().display(),
                        config.environments.keys().map(|e| e.to_string()).collect::<Vec<_>>().join(", "),
                        data.server_cert().display(),
                        data.admin_cert().display());
                }
                SetupOutcome::Joined => {
                    println!(
                        "set up {} from the installation in the database (its CA certificates and server identity)",
                        data.root().display()
                    );
                }
                SetupOutcome::AlreadySetUp => {
                    println!(
                        "{} is already set up; nothing changed",
                        data.root().display()
                    );
                }
            }
            Ok(0)
        }
        Command::Serve(args) => {
            let (mut config, data) = args.common.load()?;
            let listen = args.listen.unwrap_or(config.server.listen);
            config.server.listen = listen;
            let (store, data) = open_store(&config, data, true)?;
            let app = App::new(
                config,
                data.clone(),
                store,
                Arc::new(SystemClock),
                Arc::new(OsRng),
            )
            .with_context(|| format!("opening {}", data.root().display()))?
            // A backup is a data directory on sled, whichever store this one is on.
            .with_backups(Box::new(|data: &DataDir| {
                let store = SledStore::open(&data.store_dir())?;
                Ok(Arc::new(store) as Arc<dyn Store>)
            }));
            let app = Arc::new(app);
            let workers = app
                .spawn_workers()
                .context("starting the background workers")?;
            let tls =
                crate::http::tls::acceptor(app.clone()).context("building the TLS acceptor")?;
            // Until SIGTERM/SIGINT: then no new connections, in-flight requests finish.
            let served = actix_web::rt::System::new()
                .block_on(crate::http::serve(app.clone(), listen, tls))
                .with_context(|| format!("serving on {listen}"));
            let left = workers.stop(WORKERS_STOP);
            if left > 0 {
                tracing::warn!(
                    threads = left,
                    "workers still inside a back-end call at exit"
                );
            }
            app.flush().context("flushing the store at exit")?;
            served?;
            tracing::info!("stopped");
            Ok(0)
        }
    }
}
