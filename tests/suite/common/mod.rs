//! Starting the real `certd` binary on a loopback port with a temp data directory, and
//! talking to it over real TLS.
#![allow(dead_code)]

pub mod inproc;
pub mod pg;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A config for tests: ECDSA CAs so that setup takes milliseconds, not seconds.
pub const FAST_CONFIG: &str = r#"
[ca]
key_type = "ec-p256"
"#;

pub fn certd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_certd"))
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub config: PathBuf,
    stderr_lines: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl Server {
    /// Writes `config` beside a data directory under `dir` and starts `certd serve`.
    pub fn start(dir: &Path, config: &str) -> Server {
        let config_path = dir.join("certd.toml");
        std::fs::write(&config_path, config).unwrap();
        Server::start_with(dir, &["--config", config_path.to_str().unwrap()])
    }

    /// Starts `certd serve --data-dir DIR/data --listen 127.0.0.1:0 EXTRA...` in `dir`.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
        Server::start_env(dir, extra, &[])
    }

    /// As [`Server::start_with`], with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let data = dir.join("data");
        let mut cmd = certd();
        cmd.current_dir(dir)
            .envs(env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(extra);
        Server::spawn(cmd, data, dir.join("certd.toml"))
    }

    /// Runs `cmd` (which starts `certd serve` on port 0 with data directory `data`) and
    /// waits for its listening line.
    pub fn spawn(mut cmd: Command, data: PathBuf, config: PathBuf) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start certd");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let errs: Vec<String> = erx.try_iter().collect();
                panic!(
                    "certd printed no listening line; stderr:\n{}",
                    errs.join("\n")
                )
            });
        let port = line
            .strip_prefix("listening on https://")
            .and_then(|a| a.rsplit_once(':'))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .1
            .parse()
            .unwrap();
        Server {
            child,
            port,
            dir: data,
            config,
            stderr_lines: std::sync::Mutex::new(erx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.port, path)
    }

    pub fn chain(&self) -> PathBuf {
        self.dir.join("ca/production/chain.pem")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..200 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("certd did not stop within 10 s of SIGTERM");
    }

    /// Sends SIGTERM, waits, and returns the exit status with everything the server
    /// wrote to stderr during its whole run.
    pub fn terminate_with_log(mut self) -> (std::process::ExitStatus, String) {
        let rx = std::mem::replace(
            &mut self.stderr_lines,
            std::sync::Mutex::new(mpsc::channel().1),
        );
        let status = self.terminate();
        let rx = rx.into_inner().unwrap();
        let mut lines = Vec::new();
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
            lines.push(line);
        }
        (status, lines.join("\n"))
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr_lines
            .lock()
            .unwrap()
            .try_iter()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What the server has written to stderr since last asked, waiting up to `within`
    /// for a line containing `needle`: the log is written by a thread of its own, a
    /// moment after the answer it tells of.
    pub fn stderr_with(&self, needle: &str, within: Duration) -> String {
        let rx = self.stderr_lines.lock().unwrap();
        let deadline = std::time::Instant::now() + within;
        let mut lines: Vec<String> = rx.try_iter().collect();
        while !lines.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines.join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client trusting the data directory's production chain, optionally presenting
/// a client certificate.
pub fn client(server: &Server, identity: Option<(&Path, &Path)>) -> reqwest::blocking::Client {
    let chain = std::fs::read(server.chain()).unwrap();
    let mut b = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(30));
    for cert in reqwest::Certificate::from_pem_bundle(&chain).unwrap() {
        b = b.add_root_certificate(cert);
    }
    if let Some((cert, key)) = identity {
        // Puppet writes PKCS#1 RSA keys; the client wants PKCS#8.
        let pkcs8 = openssl::pkey::PKey::private_key_from_pem(&std::fs::read(key).unwrap())
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
        let id = reqwest::Identity::from_pkcs8_pem(&std::fs::read(cert).unwrap(), &pkcs8).unwrap();
        b = b.identity(id);
    }
    b.build().unwrap()
}

/// The admin identity of a data directory.
pub fn admin(server: &Server) -> (PathBuf, PathBuf) {
    (
        server.dir.join("admin/admin.pem"),
        server.dir.join("admin/admin.key"),
    )
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `openssl x509 -noout -fingerprint -sha256 -in PATH`.
pub fn fingerprint(path: &Path) -> String {
    let (ok, out, err) = run(Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path));
    assert!(ok, "{err}");
    out.trim().to_owned()
}

/// A fresh EC P-256 key and CSR for `name`, made by the `openssl` command line:
/// (csr PEM, key PEM).
pub fn csr_for(name: &str) -> (Vec<u8>, Vec<u8>) {
    csr_with(name, &[])
}

/// As [`csr_for`], with extra `openssl req` arguments (e.g. `-addext ...`).
pub fn csr_with(name: &str, extra: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let csr = dir.path().join("c.pem");
    let (ok, _, err) = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(extra));
    assert!(ok, "openssl req: {err}");
    (std::fs::read(csr).unwrap(), std::fs::read(key).unwrap())
}

/// A fixture file from `fixtures/`.
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(path),
    )
    .unwrap()
}

/// Clients for one server: anonymous and admin.
pub struct Api {
    pub server: Server,
    pub anon: reqwest::blocking::Client,
    pub admin: reqwest::blocking::Client,
}

impl Api {
    pub fn start(config: &str) -> (Api, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), config);
        (Api::of(server), dir)
    }

    /// Clients for a running server (one started again, for instance).
    pub fn of(server: Server) -> Api {
        let (cert, key) = admin(&server);
        Api {
            anon: client(&server, None),
            admin: client(&server, Some((&cert, &key))),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// `PUT /production/certificate_request/{name}` as anonymous; the status code.
    pub fn submit(&self, name: &str, csr: &[u8]) -> u16 {
        self.anon
            .put(self.url(&format!("/production/certificate_request/{name}")))
            .body(csr.to_vec())
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    /// `POST /production/certificate/` as admin; the status code.
    pub fn sign(&self, name: &str) -> u16 {
        self.admin
            .post(self.url("/production/certificate/"))
            .body(name.to_owned())
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    /// Submits a fresh CSR and signs it; returns (certificate PEM, key PEM).
    pub fn issue(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        let (csr, key) = csr_for(name);
        assert_eq!(self.submit(name, &csr), 201, "submit {name}");
        assert_eq!(self.sign(name), 201, "sign {name}");
        let pem = self
            .anon
            .get(self.url(&format!("/production/certificate/{name}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .to_vec();
        (pem, key)
    }

    /// The status code of `HEAD path` as anonymous.
    pub fn head(&self, path: &str) -> u16 {
        self.anon
            .head(self.url(path))
            .send()
            .unwrap()
            .status()
            .as_u16()
    }
}

/// Puppet's `POST /sign/all` as `who`, expecting 200.
pub fn sign_all(server: &Server, who: &reqwest::blocking::Client) {
    let r = who
        .post(server.url("/puppet-ca/v1/sign/all"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The problem+json `code` of a response, asserting the content type.
pub fn problem_code(resp: reqwest::blocking::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.text().unwrap();
    assert_eq!(
        ctype, "application/problem+json",
        "status {status}, body {body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    (status, v["code"].as_str().unwrap().to_owned())
}

/// `curl` with `--path-as-is`, for paths an HTTP library would normalise; returns the
/// status code.
pub fn curl_status(server: &Server, method: &str, raw_path: &str, body: Option<&Path>) -> u16 {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--path-as-is",
        "-X",
        method,
        "--cacert",
    ])
    .arg(server.chain())
    .arg(format!("https://localhost:{}{}", server.port, raw_path));
    if let Some(b) = body {
        cmd.arg("--data-binary").arg(format!("@{}", b.display()));
    }
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "curl: {err}");
    out.trim().parse().unwrap()
}

/// A self-signed ECDSA CA in `dir` (cert, key), made by the `openssl` command line: for
/// the cfssl and command issuer back ends, and as a CA a server's chain does not lead to.
pub fn make_ca(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (ok, _, err) = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(ok, "{err}");
    (cert, key)
}

/// The certnames of the certificates setup signs and records in production (its admin's
/// and the server's), which every production listing includes.
pub fn own_names(server: &Server) -> Vec<String> {
    let (ok, out, err) = run(Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "multiline", "-in"])
        .arg(server.dir.join("tls/server.pem")));
    assert!(ok, "{err}");
    let server_cn = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("commonName"))
        .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
        .expect("the server certificate has a common name");
    vec!["certd-admin".to_owned(), server_cn]
}

/// Signs `csr_pem` with an environment's issuing CA straight from the data directory
/// (as a back end or an older certd might have), writing the certificate to `out`: a
/// certificate certd's API would not issue.
pub fn sign_with_env_ca(server: &Server, env: &str, csr_pem: &[u8], out: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let csr_path = dir.path().join("req.pem");
    std::fs::write(&csr_path, csr_pem).unwrap();
    let ca = server.dir.join("ca").join(env);
    let (ok, _, err) = run(Command::new("openssl")
        .args(["x509", "-req", "-days", "1", "-in"])
        .arg(&csr_path)
        .arg("-CA")
        .arg(ca.join("ca.pem"))
        .arg("-CAkey")
        .arg(ca.join("ca.key"))
        .args(["-set_serial", "0x5eed5eed5eed5eed5eed5eed5eed5eed"])
        .args(["-extfile", "/dev/null", "-out"])
        .arg(out));
    assert!(ok, "openssl x509 -req: {err}");
}

/// `certd ca --server ... --data-dir ... ARGS` against `server` with its admin
/// certificate: (exit code, stdout, stderr).
pub fn certd_ca(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = certd()
        .arg("ca")
        .args([
            "--server",
            &format!("https://localhost:{}", server.port),
            "--data-dir",
        ])
        .arg(&server.dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes a file with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
}

/// What a server answers to the read resources, for comparing two servers byte for
/// byte: statuses, requests, certificates (PEM and fingerprint), chains, CRLs, the
/// environments and the audit log.
pub fn answers(server: &Server, envs: &[&str], names: &[&str]) -> Vec<(String, Vec<u8>)> {
    let (cert, key) = admin(server);
    let adm = client(server, Some((&cert, &key)));
    let mut paths = vec!["/environments".to_owned()];
    for env in envs {
        for p in [
            "certificate_statuses/*",
            "certificate_requests/",
            "certificate/ca",
            "certificate_revocation_list/ca",
            "events",
        ] {
            paths.push(format!("/{env}/{p}"));
        }
    }
    let mut out = Vec::new();
    for p in &paths {
        let r = adm.get(server.url(p)).send().unwrap();
        assert_eq!(r.status(), 200, "{p}");
        out.push((p.clone(), r.bytes().unwrap().to_vec()));
    }
    for n in names {
        let p = format!("/production/certificate/{n}");
        let pem = adm.get(server.url(&p)).send().unwrap().bytes().unwrap();
        let fp = adm
            .get(server.url(&p))
            .header("accept", "x-cert/fingerprint;digest=sha256")
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        let status = adm
            .get(server.url(&format!("/production/certificate_status/{n}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        out.push((p.clone(), pem.to_vec()));
        out.push((format!("{p} fingerprint"), fp.to_vec()));
        out.push((format!("{p} status"), status.to_vec()));
    }
    out
}

/// A webhook receiver on loopback: records each JSON body POSTed to it, with the
/// `X-Certd-Event-Id` header's value as `"header_event_id"`.
pub fn webhook_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    webhook_receiver_on("127.0.0.1")
}

/// As [`webhook_receiver`], listening on `addr` (an address of a test network).
pub fn webhook_receiver_on(
    addr: &str,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    webhook_receiver_with(addr, std::time::Duration::ZERO)
}

/// As [`webhook_receiver_on`], answering each POST `delay` after it was read (a slow
/// receiver: deliveries overlap whatever else feeds it meanwhile).
pub fn webhook_receiver_with(
    addr: &str,
    delay: std::time::Duration,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind((addr, 0)).unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100_000) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut len = 0;
            let mut event_id = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("x-certd-event-id:") {
                    event_id = Some(v.trim().to_owned());
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    v["header_event_id"] = serde_json::Value::from(event_id);
                    sink.lock().unwrap().push(v);
                }
            }
            std::thread::sleep(delay);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// The serials a CRL lists, in its order, as uppercase hex without leading zeros.
pub fn crl_serials_hex(crl: &openssl::x509::X509CrlRef) -> Vec<String> {
    crl.get_revoked()
        .map(|r| {
            r.iter()
                .map(|e| {
                    e.serial_number()
                        .to_bn()
                        .unwrap()
                        .to_hex_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A `command` issuer program held at its door: each call logs `$CERTD_ACTION` to
/// `calls`, waits until `go` exists (20 s at most), signs the CSR it was given with a
/// CA of its own (`ca`), then touches `done`.
pub struct GatedSigner {
    pub script: PathBuf,
    pub ca: PathBuf,
    pub calls: PathBuf,
    pub go: PathBuf,
    pub done: PathBuf,
}

impl GatedSigner {
    pub fn new(dir: &Path) -> GatedSigner {
        let (ca, ca_key) = make_ca(dir, "gated command CA");
        let g = GatedSigner {
            script: dir.join("sign.sh"),
            ca,
            calls: dir.join("calls"),
            go: dir.join("go"),
            done: dir.join("done"),
        };
        write_program(
            &g.script,
            &format!(
                "#!/bin/sh\nset -e\ncat > {d}/req-$$.pem\necho \"$CERTD_ACTION\" >> {calls}\n\
                 i=0\nwhile [ ! -e {go} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n\
                 openssl x509 -req -in {d}/req-$$.pem -CA {ca} -CAkey {key} -CAcreateserial -days 1 2>/dev/null\n\
                 touch {done}\n",
                d = dir.display(),
                calls = g.calls.display(),
                go = g.go.display(),
                done = g.done.display(),
                ca = g.ca.display(),
                key = ca_key.display(),
            ),
        );
        g
    }

    /// The `[environments.ENV.issuer]` table that calls it.
    pub fn issuer_toml(&self, env: &str) -> String {
        format!(
            "[environments.{env}.issuer]\ntype = \"command\"\nprogram = \"{}\"\nca_file = \"{}\"\ntimeout = \"60s\"\n",
            self.script.display(),
            self.ca.display()
        )
    }

    /// Lets every call through, now and from now on.
    pub fn open(&self) {
        std::fs::write(&self.go, b"").unwrap();
    }
}

/// Asserts that the certificate `cert_pem` is for the private key `key_pem`.
pub fn assert_certifies_key(cert_pem: &[u8], key_pem: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let (ok, of_cert, err) = run(Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&cert));
    assert!(ok, "{err}");
    let (ok, of_key, err) = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key));
    assert!(ok, "{err}");
    assert_eq!(of_cert, of_key, "the certificate is not for that key");
}

/// Writes `text` to `path` as a program (mode 0755).
pub fn write_program(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `certd store copy` from the installation in `from` (its `certd.toml` and `data`) into
/// the one in `to`.
pub fn store_copy(from: &std::path::Path, to: &std::path::Path) -> std::process::Output {
    certd()
        .args(["store", "copy", "--config"])
        .arg(from.join("certd.toml"))
        .arg("--data-dir")
        .arg(from.join("data"))
        .arg("--to-config")
        .arg(to.join("certd.toml"))
        .arg("--to-data-dir")
        .arg(to.join("data"))
        .output()
        .unwrap()
}

/// Reads one HTTP answer framed by `Content-Length` (or without a body) from `stream`:
/// its head, or None when the connection ended or failed first.
pub fn read_answer(stream: &mut impl std::io::Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let len: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    Some(text)
}
