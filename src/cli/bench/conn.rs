//! A minimal HTTP/1.1 client over OpenSSL for the load generator: one request at a time
//! per connection, `Content-Length` or chunked bodies, keep-alive. Lean on purpose: the
//! load generator shares the machine with the server it measures.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslStream, SslVerifyMode};

/// Where to connect and with which credentials.
#[derive(Clone)]
pub struct Target {
    /// Host to connect to.
    pub host: String,
    /// Port.
    pub port: u16,
    /// More ports on the same host: the other nodes of a cluster, connected to in turn
    /// with `port` (each new connection goes to the next).
    more_ports: Vec<u16>,
    /// Connections opened, for the turn.
    opened: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Name to verify in the server certificate (and to send as SNI).
    pub server_name: String,
    /// Verifies the server's chain against `ca` (`connect_verified`).
    verifying: SslConnector,
    /// The same without the chain check, for the timed connections (`connect`).
    quick: SslConnector,
}

impl Target {
    /// A target trusting `ca` (or nothing verified when `None`), presenting `identity`.
    pub fn new(
        host: &str,
        port: u16,
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> anyhow::Result<Target> {
        let connector = |verify: bool| -> anyhow::Result<SslConnector> {
            let mut b = SslConnector::builder(SslMethod::tls_client())?;
            match ca {
                Some(ca) if verify => b.set_ca_file(ca)?,
                _ => b.set_verify(SslVerifyMode::NONE),
            }
            if let Some((cert, key)) = identity {
                b.set_certificate_chain_file(cert)?;
                b.set_private_key_file(key, SslFiletype::PEM)?;
            }
            // The key exchange groups a Puppet agent offers: Debian's puppet-agent is Ruby
            // on the system's OpenSSL 3.0, whose defaults these are (one X25519 key
            // share). The OpenSSL 3.5+ this binary may link would add an X25519 +
            // ML-KEM-768 hybrid share, a handshake no such agent makes.
            b.set_groups_list("X25519:P-256:X448:P-521:P-384")?;
            // One `read` per answer instead of two per TLS record.
            b.set_read_ahead(true);
            Ok(b.build())
        };
        Ok(Target {
            host: host.to_owned(),
            port,
            more_ports: Vec::new(),
            opened: std::sync::Arc::default(),
            server_name: if host == "127.0.0.1" {
                "localhost".into()
            } else {
                host.to_owned()
            },
            verifying: connector(true)?,
            quick: connector(false)?,
        })
    }

    /// The same target on more ports of its host (the other nodes of a cluster): each
    /// connection goes to the next port in turn.
    pub fn with_more_ports(mut self, ports: &[u16]) -> Target {
        self.more_ports = ports.to_vec();
        self
    }

    /// Opens a TLS connection whose server chain is verified against the target's `ca`
    /// (once per target, before anything is timed).
    pub fn connect_verified(&self) -> io::Result<Conn> {
        self.open(&self.verifying)
    }

    /// Opens a TLS connection (a full handshake, the server's work unchanged) without
    /// checking the server's chain, as wrk and h2load do not: that check is the agents'
    /// work, spread over a fleet, and here it would share the server's cores.
    /// `connect_verified` has checked the chain first.
    pub fn connect(&self) -> io::Result<Conn> {
        self.open(&self.quick)
    }

    fn open(&self, connector: &SslConnector) -> io::Result<Conn> {
        let turn = self
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % (1 + self.more_ports.len());
        let port = match turn {
            0 => self.port,
            k => self.more_ports[k - 1],
        };
        let tcp = TcpStream::connect((self.host.as_str(), port))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        let tls = connector
            .connect(&self.server_name, tcp)
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        Ok(Conn {
            reader: BufReader::with_capacity(64 * 1024, tls),
            host: format!("{}:{}", self.server_name, port),
            closed: false,
        })
    }
}

/// An answer.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body (empty for HEAD and 204/304).
    pub body: Vec<u8>,
}

/// One keep-alive connection.
pub struct Conn {
    reader: BufReader<SslStream<TcpStream>>,
    host: String,
    closed: bool,
}

impl Conn {
    /// Whether the server said it closes the connection.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Sends one request and reads its answer.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut answer = Vec::new();
        let status = self.request_streamed(method, path, headers, body, &mut |part| {
            answer.extend_from_slice(part)
        })?;
        Ok(Response {
            status,
            body: answer,
        })
    }

    /// Sends one request and hands its answer's body to `sink` as it is read (a listing
    /// of 100,000 statuses is 92 MB, which a load generator on the server's cores should
    /// not hold); answers the status.
    pub fn request_streamed(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<u16> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        let s = self.reader.get_mut();
        s.write_all(&out)?;
        s.flush()?;
        self.read_response(method == "HEAD", sink)
    }

    /// Hands the next `n` bytes to `sink`, fewer only where the stream ends; answers
    /// how many.
    fn pass(&mut self, n: usize, sink: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        let mut left = n;
        while left > 0 {
            let buf = match self.reader.fill_buf() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            };
            if buf.is_empty() {
                break;
            }
            let k = buf.len().min(left);
            sink(&buf[..k]);
            self.reader.consume(k);
            left -= k;
        }
        Ok(n - left)
    }

    /// Hands exactly the next `n` bytes to `sink`.
    fn pass_exactly(&mut self, n: usize, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        if self.pass(n, sink)? < n {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "in a body"));
        }
        Ok(())
    }

    fn read_response(&mut self, head_only: bool, sink: &mut dyn FnMut(&[u8])) -> io::Result<u16> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "in headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = v.parse().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => self.closed = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        if head_only || status == 204 || status == 304 {
            return Ok(status);
        }
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| io::Error::other("bad chunk size"))?;
                if size == 0 {
                    line.clear();
                    self.reader.read_line(&mut line)?;
                    break;
                }
                self.pass_exactly(size, sink)?;
                line.clear();
                self.reader.read_line(&mut line)?;
            }
        } else if let Some(n) = length {
            self.pass_exactly(n, sink)?;
        } else {
            self.pass(usize::MAX, sink)?;
            self.closed = true;
        }
        Ok(status)
    }
}
