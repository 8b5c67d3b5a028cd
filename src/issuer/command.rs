//! `command`: an external program signs. It gets the CSR (PEM) on stdin and, in its
//! environment, `CERTD_CERTNAME`, `CERTD_ENVIRONMENT`, `CERTD_VALIDITY` (seconds) and
//! `CERTD_ACTION` (`issue`, `check`, `modify` or `cancel`). Exit 0 with a PEM certificate
//! on stdout issues; exit 75 (EX_TEMPFAIL) means "not yet, ask again"; any other exit
//! fails the order with the first line of stderr. The program runs in its own process
//! group, killed whole after `timeout` (the order is then retried).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{first_pem_cert, short, verify_returned, Cancel, Issuer, OrderRequest, Outcome};
use super::{Modify, PluginMeta};
use crate::config::CommandSpec;

/// Exit status meaning "not yet; ask again later".
const EX_TEMPFAIL: i32 = 75;
/// Pause before asking again after exit 75 or a timeout.
const RETRY_AFTER: i64 = 5;
/// Most output read from the program (a certificate chain is a few kB).
const MAX_OUTPUT: u64 = 1 << 20;

/// Why a bounded run produced no exit status.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program could not be started.
    #[error("could not start: {0}")]
    Start(std::io::Error),
    /// It ran past its timeout and was killed with its process group.
    #[error("timed out after {0:?}; killed")]
    Timeout(Duration),
}

/// Runs `cmd` in its own process group with `input` on stdin, collecting stdout and
/// stderr (at most 1 MiB each). The limit covers the whole group and the pipes: once
/// the program exits, whatever it left in its group is killed (all its output is
/// already in the pipes; the rest could only come from children), and the pipes are
/// read until they close or `timeout` from the start, whichever is first; a child that
/// escaped the group (`setsid`) and still holds a pipe costs nothing past it. A program
/// still running at `timeout` is killed with its group: [`RunError::Timeout`].
pub fn run_bounded(
    mut cmd: Command,
    input: &[u8],
    timeout: Duration,
) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), RunError> {
    use std::os::unix::process::CommandExt;
    let started = Instant::now();
    let deadline = started + timeout;
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunError::Start)?;
    let group = child.id();
    let kill_group = || {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    // Each pipe is read on a thread of its own that hands its bytes over when the pipe
    // closes; the caller stops waiting at the deadline (the thread then ends when the
    // last holder of the pipe exits).
    let drain = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(r) = r {
                let _ = r.take(MAX_OUTPUT).read_to_end(&mut out);
            }
            let _ = tx.send(out);
        });
        rx
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    if let Some(mut stdin) = child.stdin.take() {
        // Written on a thread of its own, beside the wait: a program that reads none of
        // an input larger than a pipe holds would otherwise block this thread past the
        // deadline. The write ends at the latest when the group is killed (a broken
        // pipe, ignored, as for a program that exits without reading its input).
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill_group();
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout(timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(RunError::Start(e)),
        }
    };
    kill_group();
    // What the program wrote is in the pipes already: give the readers a moment to take
    // it even when the program exited right at its deadline.
    let until = deadline.max(Instant::now() + Duration::from_millis(200));
    let collect = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(until.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    };
    let out = collect(stdout);
    let err = collect(stderr);
    Ok((status, out, err))
}

/// The external-program back end.
#[derive(Debug)]
pub struct CommandIssuer {
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
    trust: super::Trust,
}

impl CommandIssuer {
    /// From validated settings.
    pub fn new(spec: &CommandSpec) -> Result<Self, String> {
        Ok(CommandIssuer {
            program: spec.program.clone(),
            args: spec.args.clone(),
            timeout: Duration::from_secs(spec.timeout.map_or(30, |d| d.as_secs()) as u64),
            trust: super::Trust::from_file(&spec.ca_file)?,
        })
    }

    fn call(&self, action: &str, req: &OrderRequest<'_>) -> Outcome {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env("CERTD_CERTNAME", req.csr.certname().as_str())
            .env("CERTD_ENVIRONMENT", req.env.as_str())
            .env("CERTD_VALIDITY", req.validity.to_string())
            .env("CERTD_ACTION", action);
        let (status, out, err) = match run_bounded(cmd, &req.csr.to_pem(), self.timeout) {
            Ok(r) => r,
            Err(e @ RunError::Timeout(_)) => {
                return Outcome::Unavailable {
                    retry_after: RETRY_AFTER,
                    message: format!("{}: {e}", self.program.display()),
                }
            }
            Err(e) => {
                return Outcome::Unavailable {
                    retry_after: RETRY_AFTER,
                    message: format!("{}: {e}", self.program.display()),
                }
            }
        };
        let first_line = String::from_utf8_lossy(&err)
            .lines()
            .next()
            .map(short)
            .unwrap_or_default();
        match status.code() {
            Some(0) if action == "cancel" => Outcome::Canceled {
                message: first_line,
            },
            Some(0) => match first_pem_cert(&out) {
                Ok(cert_der) => match verify_returned(req, &cert_der, &self.trust) {
                    Ok(()) => Outcome::Issued { cert_der },
                    Err(m) => Outcome::Failed { message: m },
                },
                Err(m) => Outcome::Failed { message: m },
            },
            Some(EX_TEMPFAIL) => Outcome::Waiting {
                retry_after: RETRY_AFTER,
                message: if first_line.is_empty() {
                    "the signing program asks to be called again".into()
                } else {
                    first_line
                },
            },
            code => Outcome::Failed {
                message: format!(
                    "{} exited with {code:?}: {first_line}",
                    self.program.display()
                ),
            },
        }
    }
}

impl Issuer for CommandIssuer {
    fn ready(&self) -> Result<(), String> {
        match std::fs::metadata(&self.program) {
            Ok(m) if m.is_file() => Ok(()),
            _ => Err(format!("{} is not a file", self.program.display())),
        }
    }

    fn issue(&self, req: &OrderRequest<'_>, _meta: &mut PluginMeta) -> Outcome {
        self.call("issue", req)
    }

    fn check(&self, req: &OrderRequest<'_>, _meta: &mut PluginMeta) -> Outcome {
        self.call("check", req)
    }

    fn modifier(&self) -> Option<&dyn Modify> {
        Some(self)
    }

    fn canceller(&self) -> Option<&dyn Cancel> {
        Some(self)
    }
}

impl Modify for CommandIssuer {
    fn modify(&self, req: &OrderRequest<'_>, _meta: &mut PluginMeta) -> Outcome {
        self.call("modify", req)
    }
}

impl Cancel for CommandIssuer {
    fn cancel(&self, req: &OrderRequest<'_>, _meta: &mut PluginMeta) -> Outcome {
        self.call("cancel", req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program that never reads its input is stopped at its deadline, however much
    /// input it was given (more than a pipe holds, when an operator raises the CSR
    /// size limit): the input is written beside the wait, not before it.
    #[test]
    fn a_program_that_reads_no_input_is_stopped_at_its_deadline() {
        let input = vec![b'x'; 1 << 20];
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = Command::new("sleep");
            cmd.arg("20");
            let started = Instant::now();
            let outcome = run_bounded(cmd, &input, Duration::from_millis(500));
            let _ = tx.send((outcome.map(|(status, _, _)| status), started.elapsed()));
        });
        let (outcome, took) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("run_bounded still blocked 10 s after a 0.5 s deadline");
        assert!(matches!(outcome, Err(RunError::Timeout(_))), "{outcome:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
