//! Autosign (Puppet's semantics, reference section 8.4): a boolean, a list of globs, or a
//! path that is either an executable policy or an allowlist file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::ca::{domain_glob_matches, Certname};
use crate::config::Autosign;

/// An allowlist file's valid globs, with the modification time and length it had when
/// they were read.
type Read = ((std::time::SystemTime, u64, u64, i64, i64), Arc<[String]>);

/// Allowlist files as last read, by path: a file is read again only when it changed (a
/// 20 MB allowlist once cost 0.2 s of CPU per submission).
#[derive(Debug, Default)]
pub struct Allowlists {
    files: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, Read>>,
    /// How many times a file was read (for tests and diagnostics).
    reads: std::sync::atomic::AtomicUsize,
}

use std::sync::Arc;

impl Allowlists {
    /// The valid globs of the allowlist file at `path`, whose metadata is `meta`.
    fn globs(&self, path: &Path, meta: &std::fs::Metadata) -> Option<Arc<[String]>> {
        // Modification time and length, and the inode and change time, which a copy that
        // keeps the modification time (`cp -p`, `rsync -t`) still changes.
        use std::os::unix::fs::MetadataExt;
        let stamp = (
            meta.modified().ok()?,
            meta.len(),
            meta.ino(),
            meta.ctime(),
            meta.ctime_nsec(),
        );
        let mut cache = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, globs)) = cache.get(path) {
            if *seen == stamp {
                return Some(globs.clone());
            }
        }
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Ok(text) = std::fs::read_to_string(path) else {
            tracing::warn!(path = %path.display(), "autosign file unreadable; not signing");
            return None;
        };
        let globs: Arc<[String]> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter(|l| {
                let ok = !l.contains('#') && !l.contains(' ');
                if !ok {
                    tracing::warn!(line = %l, "invalid autosign line ignored");
                }
                ok
            })
            .map(str::to_owned)
            .collect();
        cache.insert(path.to_owned(), (stamp, globs.clone()));
        Some(globs)
    }
}

/// Whether `certname`, whose CSR is `csr_pem`, is signed on submission.
pub fn decide(
    setting: &Autosign,
    timeout: Duration,
    certname: &Certname,
    csr_pem: &[u8],
    allowlists: &Allowlists,
) -> bool {
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
            // Puppet's allowlist file: lines verbatim; blank and `#` lines skipped; a
            // line with a `#` or a space elsewhere is invalid and ignored.
            Ok(meta) => allowlists.globs(path, &meta).is_some_and(|globs| {
                globs
                    .iter()
                    .any(|g| domain_glob_matches(g, certname.as_str()))
            }),
        },
    }
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

    /// [`super::decide`] with a cache of its own.
    fn decide(setting: &Autosign, timeout: Duration, certname: &Certname, csr: &[u8]) -> bool {
        super::decide(setting, timeout, certname, csr, &Allowlists::default())
    }

    #[test]
    fn an_allowlist_file_is_read_again_only_when_it_changes() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("autosign.conf");
        std::fs::write(&f, "web1\n").unwrap();
        let lists = Allowlists::default();
        let p = Autosign::Path(f.clone());
        let t = Duration::from_secs(1);
        for _ in 0..3 {
            assert!(super::decide(&p, t, &name("web1"), b"", &lists));
        }
        assert_eq!(lists.reads.load(Ordering::Relaxed), 1, "read once");
        // Other content of the same length, the modification time put back (`cp -p`):
        // the change time still tells.
        let stamp = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::fs::write(&f, "web2\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(stamp)
            .unwrap();
        assert!(!super::decide(&p, t, &name("web1"), b"", &lists));
        assert!(super::decide(&p, t, &name("web2"), b"", &lists));
        assert_eq!(lists.reads.load(Ordering::Relaxed), 2);
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
