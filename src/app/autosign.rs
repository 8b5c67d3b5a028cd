//! Autosign (Puppet's semantics, reference section 8.4): a boolean, a list of globs, or a
//! path that is either an executable policy or an allowlist file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::ca::{domain_glob_matches, Certname};
use crate::config::Autosign;

/// Whether `certname`, whose CSR is `csr_pem`, is signed on submission.
pub fn decide(setting: &Autosign, timeout: Duration, certname: &Certname, csr_pem: &[u8]) -> bool {
    match setting {
        Autosign::All(yes) => *yes,
        Autosign::Globs(globs) => globs
            .iter()
            .any(|g| domain_glob_matches(g, certname.as_str())),
        Autosign::Path(path) => match std::fs::metadata(path) {
            Err(_) => false,
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
                run_policy(path, timeout, certname, csr_pem)
            }
            Ok(_) => allowlist_file(path, certname),
        },
    }
}

/// Puppet's allowlist file: lines verbatim; blank and `#` lines skipped; a line with a
/// `#` or a space elsewhere is invalid and ignored.
fn allowlist_file(path: &Path, certname: &Certname) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        tracing::warn!(path = %path.display(), "autosign file unreadable; not signing");
        return false;
    };
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            let ok = !l.contains('#') && !l.contains(' ');
            if !ok {
                tracing::warn!(line = %l, "invalid autosign line ignored");
            }
            ok
        })
        .any(|l| domain_glob_matches(l, certname.as_str()))
}

/// Runs the policy executable: certname as the only argument, the CSR on stdin; exit 0
/// signs. Killed (with its process group) after `timeout`, which counts as a "no".
fn run_policy(path: &Path, timeout: Duration, certname: &Certname, csr_pem: &[u8]) -> bool {
    let mut cmd = Command::new(path);
    cmd.arg(certname.as_str());
    match crate::issuer::run_bounded(cmd, csr_pem, timeout) {
        Ok((status, _, _)) => {
            tracing::info!(%certname, code = ?status.code(), "autosign policy answered");
            status.success()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), %certname, error = %e, "autosign policy failed; not signing");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Certname {
        Certname::parse(s).unwrap()
    }

    #[test]
    fn booleans_lists_and_missing_paths() {
        let t = Duration::from_secs(1);
        assert!(decide(&Autosign::All(true), t, &name("x"), b""));
        assert!(!decide(&Autosign::All(false), t, &name("x"), b""));
        assert!(decide(
            &Autosign::Globs(vec!["*.dc1".into()]),
            t,
            &name("a.dc1"),
            b""
        ));
        assert!(!decide(
            &Autosign::Path("/nonexistent/autosign".into()),
            t,
            &name("x"),
            b""
        ));
    }

    #[test]
    fn allowlist_files_skip_comments_and_invalid_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("autosign.conf");
        std::fs::write(&f, "# comment\n\nweb1 # trailing\n*.dc1\nexact\n").unwrap();
        let t = Duration::from_secs(1);
        let p = Autosign::Path(f);
        assert!(decide(&p, t, &name("a.dc1"), b""));
        assert!(decide(&p, t, &name("exact"), b""));
        assert!(!decide(&p, t, &name("web1"), b""));
    }

    #[test]
    fn executables_decide_by_exit_code_and_are_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let script = |n: &str, body: &str| {
            let p = dir.path().join(n);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            Autosign::Path(p)
        };
        let t = Duration::from_millis(500);
        // Reads the CSR from stdin and checks the argument.
        let yes = script(
            "yes",
            "grep -q 'BEGIN CERTIFICATE REQUEST' && [ \"$1\" = web1 ]",
        );
        assert!(decide(
            &yes,
            t,
            &name("web1"),
            b"-----BEGIN CERTIFICATE REQUEST-----\n"
        ));
        assert!(!decide(
            &yes,
            t,
            &name("web2"),
            b"-----BEGIN CERTIFICATE REQUEST-----\n"
        ));
        assert!(!decide(&script("no", "exit 1"), t, &name("web1"), b""));
        let started = std::time::Instant::now();
        assert!(!decide(&script("hang", "sleep 30"), t, &name("web1"), b""));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
