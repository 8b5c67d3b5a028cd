//! A private PostgreSQL server for the tests: `initdb` into a temporary directory, the
//! server on a free loopback port, run as an unprivileged user when the tests run as
//! root (PostgreSQL refuses root), and stopped, its directory removed, when the test
//! process ends (its control pipe closes). Each test takes a database of its own.
//!
//! Absent PostgreSQL skips a test, unless `CERTD_REQUIRE_EXTERNAL=1` (set by `.ci/run`).

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The superuser's password (TCP logins need one; the server listens on loopback only).
pub const SUPER_PASSWORD: &str = "certd-test-super";
/// The password of the `certd` role each test database is owned by.
pub const CERTD_PASSWORD: &str = "certd-test-password";

/// Where Debian keeps the server's programs (not on PATH): the newest version.
fn bin_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CERTD_PG_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

/// The server binaries, or None (the test skips) when PostgreSQL is not installed.
pub fn available() -> Option<PathBuf> {
    let bin = bin_dir();
    if bin.is_none() {
        assert!(
            std::env::var("CERTD_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "PostgreSQL (Debian package postgresql) is required (CERTD_REQUIRE_EXTERNAL=1) but is not installed"
        );
        eprintln!(
            "SKIPPED: PostgreSQL is not installed; CERTD_REQUIRE_EXTERNAL=1 makes this a failure"
        );
    }
    bin
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as the unprivileged user when we are root.
fn as_postgres_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A running private server.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    control: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
}

/// The control script: starts the server, then obeys lines on stdin (`immediate`: stop
/// at once, as a crash; `start`: start again), and when stdin closes stops it and removes
/// its directory: the shared server lives in a static, which is never dropped, and a
/// test process killed drops nothing either. It ignores the signals a terminal or a
/// test runner sends the whole process group, so that it lives to clean up (the server
/// takes its own).
const CONTROL: &str = r#"
trap '' INT TERM HUP
start() {
  "$BIN/postgres" -D "$DATA" -p "$PORT" -c listen_addresses="$LISTEN" \
    -c unix_socket_directories="$DATA" -c max_connections=200 -c shared_buffers=64MB \
    >>"$DATA/server.log" 2>&1 &
  pg=$!
}
start
while read -r cmd; do
  case "$cmd" in
    immediate) kill -QUIT "$pg"; wait "$pg" ;;
    start) start ;;
  esac
done
kill -INT "$pg" 2>/dev/null
wait "$pg"
rm -rf "${TOP:?}"
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Postgres {
    /// A new server (a few seconds: initdb), or None when PostgreSQL is not installed.
    pub fn start() -> Option<Postgres> {
        Postgres::start_on(None)
    }

    /// As [`Postgres::start`], also listening on `also` (an address of a test network
    /// the test made) and taking password logins from `10.0.0.0/8`.
    pub fn start_on(also: Option<&str>) -> Option<Postgres> {
        let bin = available()?;
        let dir = tempfile::Builder::new()
            .prefix("certd-pg")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPER_PASSWORD).unwrap();
        if is_root() {
            for p in [dir.path(), &data, &pwfile] {
                let ok = Command::new("chown")
                    .arg("65534:65534")
                    .arg(p)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "chown {}", p.display());
            }
        }
        let out = as_postgres_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut listen = "127.0.0.1".to_owned();
        if let Some(addr) = also {
            listen = format!("{listen},{addr}");
            use std::io::Write;
            let mut hba = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("pg_hba.conf"))
                .unwrap();
            writeln!(hba, "host all all 10.0.0.0/8 scram-sha-256").unwrap();
        }
        let port = free_port();
        let mut child = as_postgres_user(Path::new("/bin/sh"))
            .args(["-c", CONTROL])
            .env("LISTEN", &listen)
            .env("BIN", &bin)
            .env("DATA", &data)
            .env("PORT", port.to_string())
            .env("TOP", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let control = child.stdin.take();
        let pg = Postgres {
            dir,
            port,
            control: Mutex::new(control),
            child: Mutex::new(child),
        };
        pg.wait_ready(Duration::from_secs(60));
        pg.admin()
            .batch_execute(&format!(
                "CREATE ROLE certd LOGIN PASSWORD '{CERTD_PASSWORD}'"
            ))
            .unwrap();
        Some(pg)
    }

    /// The server shared by the tests of this process (started once).
    pub fn shared() -> Option<&'static Postgres> {
        static SHARED: OnceLock<Option<Postgres>> = OnceLock::new();
        SHARED.get_or_init(Postgres::start).as_ref()
    }

    /// Waits until the server takes logins.
    pub fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            if postgres::Client::connect(
                &self.conninfo("postgres", "postgres", SUPER_PASSWORD),
                postgres::NoTls,
            )
            .is_ok()
            {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "PostgreSQL did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/server.log")).unwrap_or_default()
    }

    pub fn conninfo(&self, db: &str, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={db} user={user} password={password}",
            self.port
        )
    }

    /// A superuser connection to the `postgres` database.
    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(
            &self.conninfo("postgres", "postgres", SUPER_PASSWORD),
            postgres::NoTls,
        )
        .unwrap()
    }

    /// A new, empty database owned by the `certd` role.
    pub fn database(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        self.admin()
            .batch_execute(&format!("CREATE DATABASE {name} OWNER certd"))
            .unwrap();
        name
    }

    /// A superuser connection to database `db`.
    pub fn admin_of(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(
            &self.conninfo(db, "postgres", SUPER_PASSWORD),
            postgres::NoTls,
        )
        .unwrap()
    }

    /// The `[store]` section for certd on database `db` as the `certd` role, its
    /// password in a file written into `dir`.
    pub fn store_toml(&self, db: &str, dir: &Path) -> String {
        let pw = dir.join("pg-password");
        super::write_private(&pw, CERTD_PASSWORD.as_bytes());
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"host=127.0.0.1 port={} dbname={db} user=certd\"\npassword_file = \"{}\"\nstatement_timeout = \"2s\"\n",
            self.port,
            pw.display()
        )
    }

    /// The store configuration for opening a `PgStore` directly.
    pub fn store_config(&self, db: &str) -> certd::config::StoreConfig {
        certd::config::StoreConfig {
            backend: certd::config::StoreBackend::Postgres,
            url: format!("host=127.0.0.1 port={} dbname={db} user=certd", self.port),
            password_file: Some(self.password_file()),
            statement_timeout: certd::config::Duration::secs(2),
            // One lane and the committer: each connection costs a server process.
            pool_size: 2,
            ..Default::default()
        }
    }

    fn password_file(&self) -> PathBuf {
        let p = self.dir.path().join("certd-password");
        if !p.exists() {
            super::write_private(&p, CERTD_PASSWORD.as_bytes());
        }
        p
    }

    fn control(&self, line: &str) {
        let mut c = self.control.lock().unwrap();
        let stdin = c.as_mut().expect("server running");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop_immediate(&self) {
        self.control("immediate");
        let start = Instant::now();
        while postgres::Client::connect(
            &self.conninfo("postgres", "postgres", SUPER_PASSWORD),
            postgres::NoTls,
        )
        .is_ok()
        {
            assert!(start.elapsed() < Duration::from_secs(30), "still up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again after [`Self::stop_immediate`] and waits until it takes logins.
    pub fn restart(&self) {
        self.control("start");
        self.wait_ready(Duration::from_secs(60));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.control.lock().unwrap().take();
        let _ = self.child.lock().unwrap().wait();
    }
}
