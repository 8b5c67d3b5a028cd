//! Several certd nodes on one PostgreSQL database (real processes, the private server of
//! `common::pg`): a node joins with the configuration and the key file only, and the
//! nodes answer as one server: read-after-write, revocations refused by every node's
//! handshake, environments created on one served by all, CRL numbers never used twice,
//! and an event follower that misses nothing while two nodes write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::pg::Postgres;
use crate::common::*;
use certd::ca::{build_csr, Certname, KeyType};

const AUTOSIGN: &str = "[environments.production]\nautosign = true\n";

/// N nodes on one new database, sharing one key file; node 0 set the installation up,
/// the others joined with empty data directories.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Server>,
    _dirs: Vec<tempfile::TempDir>,
    _shared: tempfile::TempDir,
    db: String,
}

impl Cluster {
    fn start(pg: &Postgres, n: usize) -> Cluster {
        Cluster::start_with(pg, n, "", "")
    }

    /// With `ca` (keys of `[ca]`) and `extra` (whole tables) in every node's
    /// configuration.
    fn start_with(pg: &Postgres, n: usize, ca: &str, extra: &str) -> Cluster {
        Cluster::start_config(
            pg,
            n,
            &format!("[ca]\nkey_type = \"ec-p256\"\n{ca}{AUTOSIGN}{extra}"),
        )
    }

    /// With `tables` as every node's configuration, before its `[store]`.
    pub(crate) fn start_config(pg: &Postgres, n: usize, tables: &str) -> Cluster {
        let db = pg.database();
        let shared = tempfile::tempdir().unwrap();
        let key = shared.path().join("certd-store.key");
        let config = format!(
            "{tables}{}key_file = \"{}\"\n",
            pg.store_toml(&db, shared.path()),
            key.display()
        );
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..n {
            let dir = tempfile::tempdir().unwrap();
            nodes.push(Server::start(dir.path(), &config));
            dirs.push(dir);
        }
        Cluster {
            nodes,
            _dirs: dirs,
            _shared: shared,
            db,
        }
    }

    /// The installation's admin identity (node 0's: the joined nodes have none).
    pub(crate) fn admin(&self) -> (PathBuf, PathBuf) {
        admin(&self.nodes[0])
    }

    fn admin_clients(&self) -> Vec<reqwest::blocking::Client> {
        let (cert, key) = self.admin();
        self.nodes
            .iter()
            .map(|s| client(s, Some((&cert, &key))))
            .collect()
    }

    fn anon_clients(&self) -> Vec<reqwest::blocking::Client> {
        self.nodes.iter().map(|s| client(s, None)).collect()
    }
}

/// A new key for `name`, its CSR autosigned through `node`; the certificate and key
/// written into `dir` as `name.pem` and `name.key`.
fn enroll(
    node: &Server,
    anon: &reqwest::blocking::Client,
    name: &str,
    dir: &Path,
) -> (PathBuf, PathBuf) {
    enroll_at(&format!("https://localhost:{}", node.port), anon, name, dir)
}

/// [`enroll`]s `{prefix}{i}` for each `i` of `range` through the nodes in turn.
fn enroll_over(
    c: &Cluster,
    anon: &[reqwest::blocking::Client],
    prefix: &str,
    range: std::ops::Range<usize>,
    dir: &Path,
) {
    let n = c.nodes.len();
    for i in range {
        enroll(&c.nodes[i % n], &anon[i % n], &format!("{prefix}{i}"), dir);
    }
}

fn status_at(url: &str, admin: &reqwest::blocking::Client) -> serde_json::Value {
    admin
        .get(format!("{url}/status"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// `node`'s `/status` as the installation's admin sees it (the cluster part is for
/// global admins only).
fn status(c: &Cluster, node: &Server) -> serde_json::Value {
    let (cert, key) = c.admin();
    client(node, Some((&cert, &key)))
        .get(node.url("/status"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn p(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
fn a_node_joins_with_the_configuration_and_the_key_file_only() {
    let Some(pg) = Postgres::shared() else { return };
    let c = Cluster::start(pg, 2);
    let (first, second) = (&c.nodes[0], &c.nodes[1]);
    // The joined node serves the installation's chain, from the database.
    assert_eq!(
        std::fs::read(first.chain()).unwrap(),
        std::fs::read(second.chain()).unwrap()
    );
    assert!(
        !second.dir.join("admin").exists(),
        "a joined node has no admin identity"
    );
    // Its CA key came from the database: it signs, and what it signs chains.
    let anon = c.anon_clients();
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = enroll(second, &anon[1], "joined-signs", dir.path());
    let (ok, _, err) = run(std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(first.chain())
        .arg(&cert));
    assert!(ok, "{err}");
    // Both see both within a few heartbeats, each with the same configuration.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&c, first);
        let ids: Vec<String> = s["cluster"]["nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|n| n["id"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if ids.len() == 2 {
            assert!(s["cluster"].get("config_differs").is_none(), "{s}");
            // One machine, one clock: the offset to the database's is the round trip's.
            let offset = s["cluster"]["clock_offset_ms"].as_i64().unwrap();
            assert!(offset.abs() < 1_000, "{s}");
            assert!(ids.contains(
                &status(&c, second)["cluster"]["node_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            ));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not see each other: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A node started with another configuration than the cluster's (here, one more
/// global admin): every node's `/status` names it and the part that differs, and it logs
/// the difference once.
#[test]
fn a_node_with_another_configuration_is_named_with_what_differs() {
    let Some(pg) = Postgres::shared() else { return };
    let c = Cluster::start(pg, 1);
    let config = std::fs::read_to_string(&c.nodes[0].config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let odd = Server::start(
        dir.path(),
        &format!("[authz]\nadmins = [\"ops-1\"]\n{config}"),
    );
    let odd_id = status(&c, &odd)["cluster"]["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let named = wait_for(Duration::from_secs(10), || {
        let s = status(&c, &c.nodes[0]);
        let d = s["cluster"]["config_differs"].as_array()?.clone();
        d.iter()
            .find(|d| d["node"] == odd_id.as_str())
            .map(|d| d["parts"].clone())
    })
    .expect("node 0 does not name the odd node");
    assert_eq!(named, serde_json::json!(["admins"]));
    let (_, log) = odd.terminate_with_log();
    assert_eq!(
        log.matches("configuration differs").count(),
        1,
        "logged once:\n{log}"
    );
    assert!(log.contains("differs=admins"), "{log}");
}

/// Two live processes beating under one node id (an id shared by mistake, here node
/// 0's given to a second process): every node's `/status` names the id, each process
/// says so in its log once, and leases are held by a process, never by the id: the
/// webhook is fed by one of them, each event once, not by both.
#[test]
fn two_processes_under_one_node_id_are_seen_and_hold_no_lease_together() {
    let Some(pg) = Postgres::shared() else { return };
    // Slow: a delivery that takes a while overlaps the other process's, were it to
    // hold the lease too.
    let (hook, got) = webhook_receiver_with("127.0.0.1", Duration::from_millis(250));
    let c = Cluster::start_with(pg, 1, "", &format!("[events]\nwebhooks = [\"{hook}\"]\n"));
    let config = std::fs::read_to_string(&c.nodes[0].config).unwrap();
    let id = status(&c, &c.nodes[0])["cluster"]["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let twin = Server::start(
        dir.path(),
        &format!("[server]\nnode_id = \"{id}\"\n{config}"),
    );
    for node in [&c.nodes[0], &twin] {
        wait_for(Duration::from_secs(15), || {
            let s = status(&c, node);
            let shared = s["cluster"]["shared_node_ids"].as_array()?;
            shared.contains(&id.as_str().into()).then_some(())
        })
        .unwrap_or_else(|| panic!("{} does not name the shared id {id}", node.url("")));
    }
    // Both processes run the webhook's feed; one holds its lease at a time.
    let (cert, key) = c.admin();
    let admin = client(&c.nodes[0], Some((&cert, &key)));
    let base = event_ids(&c.nodes[0], &admin, 0)
        .last()
        .copied()
        .unwrap_or(0);
    let anon = client(&c.nodes[0], None);
    for i in 0..5 {
        enroll(&c.nodes[0], &anon, &format!("twin{i}"), dir.path());
    }
    let want: BTreeSet<u64> = event_ids(&c.nodes[0], &admin, base).into_iter().collect();
    assert!(want.len() >= 5, "{want:?}");
    assert!(
        wait_for(Duration::from_secs(40), || want
            .is_subset(&received_ids(&got))
            .then_some(()))
        .is_some(),
        "events never delivered"
    );
    // Past a second delivery round of the other process, if it held the lease too.
    std::thread::sleep(Duration::from_secs(3));
    let ids: Vec<u64> = got
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .filter(|i| want.contains(i))
        .collect();
    assert_eq!(ids.len(), want.len(), "events delivered twice: {ids:?}");
    let lease = format!("webhook {hook}");
    let s = status(&c, &twin);
    let l = s["cluster"]["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == lease.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no lease {lease}: {s}"));
    assert_eq!(holder_node(l["holder"].as_str().unwrap()), id, "{l}");
    let (_, log) = twin.terminate_with_log();
    assert_eq!(
        log.matches("two live certd processes").count(),
        1,
        "logged once:\n{log}"
    );
}

/// An environment created on a node whose configuration names an autosign policy the
/// other node's lacks: the other node says it does not serve it, and still applies the
/// changes after it (a revocation made next is refused by its handshake).
#[test]
fn an_environment_a_node_cannot_serve_does_not_stop_its_feed() {
    let Some(pg) = Postgres::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.sh");
    write_program(&policy, "#!/bin/sh\nexit 0\n");
    let c = Cluster::start(pg, 2);
    let config = std::fs::read_to_string(&c.nodes[0].config).unwrap();
    // Node 0 again, with the policy.
    let richer = tempfile::tempdir().unwrap();
    let with_policy = Server::start(
        richer.path(),
        &format!(
            "{config}[autosign_policies]\nyes = \"{}\"\n",
            policy.display()
        ),
    );
    let (cert, key) = c.admin();
    let admin = client(&with_policy, Some((&cert, &key)));
    let r = admin
        .put(with_policy.url("/environments/policed"))
        .body(r#"{"autosign": {"policy": "yes"}}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let anon = c.anon_clients();
    let (vcert, vkey) = enroll(&c.nodes[0], &anon[0], "after-policed", dir.path());
    let r = client(&c.nodes[0], Some((&cert, &key)))
        .delete(c.nodes[0].url("/production/certificate/after-policed"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let refused = wait_for(Duration::from_secs(5), || {
        match client(&c.nodes[1], Some((&vcert, &vkey)))
            .get(c.nodes[1].url("/status"))
            .send()
        {
            Err(_) => Some(()),
            Ok(r) if r.status() == 403 => Some(()),
            Ok(_) => None,
        }
    });
    assert!(
        refused.is_some(),
        "node 1's feed stopped at the environment it cannot serve"
    );
    let r = anon[1]
        .get(c.nodes[1].url("/policed/certificate/ca"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn a_certificate_signed_on_one_node_is_served_by_the_next_at_once() {
    let Some(pg) = Postgres::shared() else { return };
    let c = Cluster::start(pg, 3);
    let anon = c.anon_clients();
    let key = KeyType::EcP256.generate().unwrap();
    let mut missing = 0;
    let started = Instant::now();
    for i in 0..1000 {
        let (a, b) = (i % 3, (i + 1) % 3);
        let name = format!("raw{i}");
        let csr = build_csr(&key, &Certname::parse(&name).unwrap(), &[]).unwrap();
        let r = anon[a]
            .put(c.nodes[a].url(&format!("/production/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = anon[b]
            .get(c.nodes[b].url(&format!("/production/certificate/{name}")))
            .send()
            .unwrap();
        if r.status() != 200 {
            missing += 1;
        }
    }
    eprintln!(
        "read-after-write over 3 nodes: 1000 PUT-then-GET pairs in {:?}, {missing} not found",
        started.elapsed()
    );
    assert_eq!(missing, 0);
}

/// Revoke on one node, then: the next node's HEAD says 410 at once, and its handshake
/// refuses the certificate within 1 s (p99 of 100 tries), also when that node's
/// listening connection to the database was cut just before (every fifth try); a
/// keep-alive connection opened before is refused too.
#[test]
fn a_revocation_on_one_node_is_refused_by_every_other_within_a_second() {
    let Some(pg) = Postgres::shared() else { return };
    let c = Cluster::start(pg, 3);
    let anon = c.anon_clients();
    let admins = c.admin_clients();
    let dir = tempfile::tempdir().unwrap();
    let mut db = pg.admin_of(&c.db);
    let mut took = Vec::new();
    for i in 0..100 {
        let (a, b) = (i % 3, (i + 1) % 3);
        let name = format!("rv{i}");
        let (cert, key) = enroll(&c.nodes[a], &anon[a], &name, dir.path());
        let holder = client(&c.nodes[b], Some((&cert, &key)));
        let r = holder.get(c.nodes[b].url("/status")).send().unwrap();
        assert_eq!(r.status(), 200, "the certificate works on node {b} before");
        if i % 5 == 4 {
            let pid = c.nodes[b].child.id();
            let rows = db
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                    &[&format!("certd watch {pid}")],
                )
                .unwrap();
            assert_eq!(rows.len(), 1, "node {b}'s watch connection");
        }
        let r = admins[a]
            .delete(c.nodes[a].url(&format!("/production/certificate/{name}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
        let revoked_at = Instant::now();
        let r = anon[b]
            .head(c.nodes[b].url(&format!("/production/certificate/{name}")))
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            410,
            "HEAD on node {b} right after the revoke on {a}"
        );
        assert!(
            refused_by(
                &c.nodes[b],
                &cert,
                &key,
                revoked_at + Duration::from_secs(10)
            ),
            "node {b} still accepts {name}"
        );
        took.push(revoked_at.elapsed());
        // The connection opened before is refused as well.
        let old = holder.get(c.nodes[b].url("/status")).send();
        assert!(
            old.as_ref().map(|r| r.status() == 403).unwrap_or(true),
            "{old:?}"
        );
    }
    took.sort();
    eprintln!(
        "revocation refused by another node's handshake: p50 {:?}, p99 {:?}, max {:?} (100 tries, 20 with the watch connection cut)",
        p(&took, 0.5),
        p(&took, 0.99),
        took[took.len() - 1]
    );
    assert!(p(&took, 0.99) <= Duration::from_secs(1));
    // Every node's CRL lists all 100, with a number no other CRL carried.
    std::thread::sleep(Duration::from_millis(1100));
    let mut numbers = BTreeSet::new();
    for (i, node) in c.nodes.iter().enumerate() {
        let (der, listed) = production_crl(node, &anon[i]);
        assert_eq!(listed, 100, "node {i}'s CRL");
        let number = crl_number(&der);
        assert!(
            numbers.insert(number),
            "CRL number {number} served by two nodes"
        );
    }
}

/// A revocation is refused in the handshake on every node at once even when no CRL
/// can be stored (here a trigger refuses every CRL write, as a full disk or a read-only
/// database would): the CRL is a second thing, listed once it can be stored again.
#[test]
fn a_revocation_is_refused_in_handshakes_even_when_no_crl_can_be_stored() {
    let Some(pg) = Postgres::shared() else { return };
    let c = Cluster::start(pg, 2);
    let dir = tempfile::tempdir().unwrap();
    let anon = c.anon_clients();
    let admins = c.admin_clients();
    let (cert, key) = enroll(&c.nodes[0], &anon[0], "stuck", dir.path());
    let mut sql = pg.admin_of(&c.db);
    sql.batch_execute(
        "CREATE FUNCTION refuse_crl() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'no CRL now'; END $$;
         CREATE TRIGGER refuse_crl BEFORE INSERT OR UPDATE ON certd_crls
             FOR EACH ROW EXECUTE PROCEDURE refuse_crl();",
    )
    .unwrap();
    let r = admins[0]
        .delete(c.nodes[0].url("/production/certificate/stuck"))
        .send()
        .unwrap();
    let revoked_at = Instant::now();
    eprintln!("revoke with no CRL stored: {}", r.status());
    for (k, node) in c.nodes.iter().enumerate() {
        assert!(
            refused_by(node, &cert, &key, revoked_at + Duration::from_secs(5)),
            "node {k} still accepts a revoked certificate"
        );
    }
    sql.batch_execute("DROP TRIGGER refuse_crl ON certd_crls")
        .unwrap();
    for (k, node) in c.nodes.iter().enumerate() {
        wait_for(Duration::from_secs(10), || {
            (production_crl(node, &anon[k]).1 == 1).then_some(())
        })
        .unwrap_or_else(|| panic!("node {k}'s CRL never listed the revocation"));
    }
}

/// Whether `node` refuses the client certificate `cert` (key `key`) by `until`, asked
/// every 5 ms on a new connection: refused, the handshake fails, or (the set changed
/// between the handshake and the request) the request is 403.
fn refused_by(node: &Server, cert: &Path, key: &Path, until: Instant) -> bool {
    loop {
        match client(node, Some((cert, key)))
            .get(node.url("/status"))
            .send()
        {
            Err(_) => return true,
            Ok(r) if r.status() == 403 => return true,
            Ok(r) => assert_eq!(r.status(), 200),
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A node's production CRL (PEM, as served) and how many certificates it lists.
fn production_crl(node: &Server, anon: &reqwest::blocking::Client) -> (Vec<u8>, usize) {
    let pem = anon
        .get(node.url("/production/certificate_revocation_list/ca"))
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();
    let crl = openssl::x509::X509Crl::from_pem(&pem).unwrap();
    let listed = crl.get_revoked().map(|r| r.len()).unwrap_or(0);
    (pem, listed)
}

/// The CRL number of a CRL (DER or PEM), by the `openssl` command line.
fn crl_number(bytes: &[u8]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crl");
    std::fs::write(&path, bytes).unwrap();
    let inform = if bytes.starts_with(b"-----") {
        "PEM"
    } else {
        "DER"
    };
    let (ok, out, err) = run(std::process::Command::new("openssl")
        .args(["crl", "-noout", "-crlnumber", "-inform", inform, "-in"])
        .arg(&path));
    assert!(ok, "{err}");
    let hex = out
        .trim()
        .trim_start_matches("crlNumber=")
        .trim_start_matches("0x");
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn revocations_spread_over_the_nodes_never_put_one_crl_number_on_two_crls() {
    let Some(pg) = Postgres::shared() else { return };
    let c = Arc::new(Cluster::start(pg, 3));
    let anon = c.anon_clients();
    let dir = tempfile::tempdir().unwrap();
    enroll_over(&c, &anon, "burst", 0..30, dir.path());
    let highest = || {
        (0..3)
            .map(|i| crl_number(&production_crl(&c.nodes[i], &anon[i]).0))
            .max()
            .unwrap()
    };
    let before = highest();
    // Every CRL any node serves while 30 revocations land on the three at once.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (c, done) = (c.clone(), done.clone());
        std::thread::spawn(move || {
            let anon = c.anon_clients();
            let mut seen: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let mut last = false;
            loop {
                for (i, node) in c.nodes.iter().enumerate() {
                    let der = production_crl(node, &anon[i]).0;
                    let n = crl_number(&der);
                    let before = seen.entry(n).or_insert_with(|| der.clone());
                    assert_eq!(*before, der, "CRL number {n} on two different CRLs");
                }
                if last {
                    return seen.len();
                }
                last = done.load(Ordering::SeqCst);
            }
        })
    };
    // Ten admins at once, each on one node (so each node revokes three or four at a
    // time).
    let threads: Vec<_> = (0..10)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let admins = c.admin_clients();
                let k = t % 3;
                for i in (t..30).step_by(10) {
                    let r = admins[k]
                        .delete(c.nodes[k].url(&format!("/production/certificate/burst{i}")))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 204);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100));
    done.store(true, Ordering::SeqCst);
    let distinct = watcher.join().unwrap();
    for (i, node) in c.nodes.iter().enumerate() {
        assert_eq!(production_crl(node, &anon[i]).1, 30, "node {i}");
    }
    // Every CRL issued took a number no other had: the numbers used are the signings.
    let signed = highest() - before;
    eprintln!(
        "30 revocations over 3 nodes: {signed} CRLs signed in all, {distinct} distinct ones seen, no number reused"
    );
}

#[test]
fn an_environment_created_on_one_node_is_served_by_every_other_within_a_second() {
    let Some(pg) = Postgres::shared() else { return };
    let c = Cluster::start(pg, 2);
    let admins = c.admin_clients();
    let r = admins[0]
        .put(c.nodes[0].url("/environments/staging"))
        .body(r#"{"autosign": true, "allow_anonymous_csr": true}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let created = Instant::now();
    let chain = admins[0]
        .get(c.nodes[0].url("/staging/certificate/ca"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    loop {
        let r = admins[1]
            .get(c.nodes[1].url("/staging/certificate/ca"))
            .send()
            .unwrap();
        if r.status() == 200 {
            assert_eq!(r.bytes().unwrap(), chain);
            break;
        }
        assert_eq!(r.status(), 404);
        assert!(
            created.elapsed() < Duration::from_secs(1),
            "node 1 does not serve staging"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "environment served by the other node after {:?}",
        created.elapsed()
    );
    // Node 1 signs in it, and node 0's handshake takes the certificate.
    let anon = c.anon_clients();
    let (csr, key) = csr_for("stage1");
    let r = anon[1]
        .put(c.nodes[1].url("/staging/certificate_request/stage1"))
        .body(csr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let cert = anon[0]
        .get(c.nodes[0].url("/staging/certificate/stage1"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), &cert).unwrap();
    write_private(&dir.path().join("k.pem"), &key);
    let holder = client(
        &c.nodes[0],
        Some((&dir.path().join("c.pem"), &dir.path().join("k.pem"))),
    );
    let r = holder
        .get(c.nodes[0].url("/staging/certificate/stage1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Its CRL is served by both.
    for (i, node) in c.nodes.iter().enumerate() {
        let r = anon[i]
            .get(node.url("/staging/certificate_revocation_list/ca"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "node {i}");
    }
}

/// Two nodes' writers at full speed and a follower reading `events?after=` through
/// either: the follower's ids are exactly the log's, none skipped.
#[test]
fn a_follower_misses_no_event_while_two_nodes_write() {
    let Some(pg) = Postgres::shared() else { return };
    let c = Arc::new(Cluster::start(pg, 2));
    let done = Arc::new(AtomicBool::new(false));
    let follower = {
        let (c, done) = (c.clone(), done.clone());
        std::thread::spawn(move || {
            let admins = c.admin_clients();
            let mut ids: Vec<u64> = Vec::new();
            let mut last = false;
            for round in 0.. {
                let after = ids.last().copied().unwrap_or(0);
                let k = round % 2;
                let page: Vec<serde_json::Value> = admins[k]
                    .get(c.nodes[k].url(&format!("/production/events?after={after}&limit=50")))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                ids.extend(page.iter().map(|e| e["id"].as_u64().unwrap()));
                if page.is_empty() && last {
                    return ids;
                }
                last = done.load(Ordering::SeqCst);
            }
            unreachable!()
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let anon = c.anon_clients();
                let key = KeyType::EcP256.generate().unwrap();
                let k = t % 2;
                for i in 0..40 {
                    let name = format!("ev{t}x{i}");
                    let csr = build_csr(&key, &Certname::parse(&name).unwrap(), &[]).unwrap();
                    let r = anon[k]
                        .put(c.nodes[k].url(&format!("/production/certificate_request/{name}")))
                        .body(csr)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 201);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let followed = follower.join().unwrap();
    let admins = c.admin_clients();
    let mut all = Vec::new();
    loop {
        let after = all.last().copied().unwrap_or(0);
        let page: Vec<serde_json::Value> = admins[0]
            .get(c.nodes[0].url(&format!("/production/events?after={after}")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if page.is_empty() {
            break;
        }
        all.extend(page.iter().map(|e| e["id"].as_u64().unwrap()));
    }
    assert!(all.len() >= 160, "{} events", all.len());
    assert_eq!(followed, all, "the follower's ids differ from the log's");
    assert!(
        all.windows(2).all(|w| w[1] == w[0] + 1),
        "the log has a gap"
    );
}

/// Kills `node` as a crash would (SIGKILL; its process is reaped when dropped).
fn sigkill(node: &Server) {
    let (ok, _, err) =
        run(std::process::Command::new("kill").args(["-KILL", &node.child.id().to_string()]));
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_millis(200));
}

/// The index of the node holding lease `name`, by `/status` of the nodes in `alive`.
fn lease_holder(c: &Cluster, alive: &[usize], name: &str) -> Option<usize> {
    let ids: Vec<String> = alive
        .iter()
        .map(|&i| {
            status(c, &c.nodes[i])["cluster"]["node_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let s = status(c, &c.nodes[alive[0]]);
    let holder = s["cluster"]["leases"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)?["holder"]
        .as_str()?
        .to_owned();
    ids.iter()
        .position(|id| holder_node(&holder) == id)
        .map(|k| alive[k])
}

/// The node id of a lease holder (`id#instance`: the process holds it).
fn holder_node(holder: &str) -> &str {
    holder.rsplit_once('#').map_or(holder, |(id, _)| id)
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + limit;
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The event ids a webhook receiver got (repeats once).
fn received_ids(got: &std::sync::Mutex<Vec<serde_json::Value>>) -> BTreeSet<u64> {
    got.lock()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect()
}

/// The production events' ids after `after`, read through `node`.
fn event_ids(node: &Server, admin: &reqwest::blocking::Client, after: u64) -> Vec<u64> {
    event_ids_at(&format!("https://localhost:{}", node.port), admin, after)
}

/// [`event_ids`] through a node by URL.
fn event_ids_at(url: &str, admin: &reqwest::blocking::Client, after: u64) -> Vec<u64> {
    let mut all = Vec::new();
    let mut cursor = after;
    loop {
        let page: Vec<serde_json::Value> = admin
            .get(format!("{url}/production/events?after={cursor}"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let Some(last) = page.last() else { return all };
        cursor = last["id"].as_u64().unwrap();
        all.extend(page.iter().map(|e| e["id"].as_u64().unwrap()));
    }
}

/// A webhook is fed by one node at a time; SIGKILL that node mid-stream and the other
/// takes its lease over and resumes from the stored cursor: the receiver gets every
/// event (repeats allowed), each POST naming its event in `X-Certd-Event-Id`.
#[test]
fn a_webhook_is_fed_by_one_node_and_taken_over_when_that_node_dies() {
    let Some(pg) = Postgres::shared() else { return };
    let (hook, got) = webhook_receiver();
    let c = Cluster::start_with(pg, 2, "", &format!("[events]\nwebhooks = [\"{hook}\"]\n"));
    let lease = format!("webhook {hook}");
    let (cert, key) = c.admin();
    let admin1 = client(&c.nodes[1], Some((&cert, &key)));
    let base = event_ids(&c.nodes[1], &admin1, 0)
        .last()
        .copied()
        .unwrap_or(0);
    let anon = c.anon_clients();
    let dir = tempfile::tempdir().unwrap();
    enroll_over(&c, &anon, "hook", 0..10, dir.path());
    let holder = wait_for(Duration::from_secs(10), || {
        lease_holder(&c, &[0, 1], &lease)
    })
    .expect("a node holds the webhook's lease");
    let survivor = 1 - holder;
    sigkill(&c.nodes[holder]);
    let killed = Instant::now();
    let admin = client(&c.nodes[survivor], Some((&cert, &key)));
    for i in 10..20 {
        enroll(
            &c.nodes[survivor],
            &anon[survivor],
            &format!("hook{i}"),
            dir.path(),
        );
    }
    let want: BTreeSet<u64> = event_ids(&c.nodes[survivor], &admin, base)
        .into_iter()
        .collect();
    assert!(want.len() >= 40, "{} events", want.len());
    let complete = wait_for(Duration::from_secs(40), || {
        want.is_subset(&received_ids(&got)).then_some(())
    });
    let received = got.lock().unwrap().clone();
    let ids: Vec<u64> = received.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(
        complete.is_some(),
        "events never delivered: {:?}",
        want.iter().filter(|i| !ids.contains(i)).collect::<Vec<_>>()
    );
    for e in &received {
        assert_eq!(
            e["header_event_id"].as_str(),
            Some(e["id"].as_u64().unwrap().to_string().as_str()),
            "{e}"
        );
    }
    // As of the survivor's next heartbeat.
    assert!(wait_for(Duration::from_secs(5), || {
        (lease_holder(&c, &[survivor], &lease) == Some(survivor)).then_some(())
    })
    .is_some());
    let repeats = ids.len() - ids.iter().collect::<BTreeSet<_>>().len();
    eprintln!(
        "webhook: {} events delivered, {repeats} repeats, every one after the kill within {:?}",
        want.len(),
        killed.elapsed()
    );
}

/// The CRLs' re-issue before `nextUpdate` is one node's (the lease holder's), the other
/// serving the same CRL; when the holder dies the other takes the lease and the CRL
/// never runs out.
#[test]
fn the_crl_refresh_is_one_nodes_and_another_takes_it_over() {
    let Some(pg) = Postgres::shared() else { return };
    // A 16 s CRL: a maintenance pass every 2 s, a re-issue every 8 s.
    let c = Cluster::start_with(pg, 2, "crl_next_update = \"16s\"\n", "");
    let anon = c.anon_clients();
    let sample = |i: usize| {
        let (pem, _) = production_crl(&c.nodes[i], &anon[i]);
        let crl = openssl::x509::X509Crl::from_pem(&pem).unwrap();
        let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
        let next = crl.next_update().expect("nextUpdate");
        assert!(
            *next > now,
            "node {i} serves an expired CRL; its log:\n{}",
            c.nodes[i].stderr()
        );
        (crl_number(&pem), pem)
    };
    // Within 20 s the holder re-issues and the other node serves its very CRL.
    let start_number = sample(0).0.max(sample(1).0);
    let shared = wait_for(Duration::from_secs(20), || {
        let (a, b) = (sample(0), sample(1));
        (a.0 > start_number && a == b).then_some(a.0)
    });
    assert!(shared.is_some(), "the nodes never served one re-issued CRL");
    let holder = wait_for(Duration::from_secs(5), || {
        lease_holder(&c, &[0, 1], "crl refresh")
    })
    .expect("a node holds the CRL refresh lease");
    let survivor = 1 - holder;
    sigkill(&c.nodes[holder]);
    let killed = Instant::now();
    // The survivor takes the lease (3 passes: 6 s) and re-issues: never expired.
    let taken = wait_for(Duration::from_secs(20), || {
        sample(survivor);
        (lease_holder(&c, &[survivor], "crl refresh") == Some(survivor)).then(Instant::now)
    })
    .expect("the survivor took the CRL refresh lease");
    let before = sample(survivor).0;
    let reissued = wait_for(Duration::from_secs(20), || {
        let (n, _) = sample(survivor);
        (n > before).then_some(n)
    });
    assert!(reissued.is_some(), "the survivor did not re-issue");
    eprintln!(
        "CRL refresh: lease taken over {:?} after the kill; the CRL never expired",
        taken - killed
    );
}

/// Every page of an admin listing (`Link: <...>; rel="next"` followed), as JSON values.
fn listing(base: &str, admin: &reqwest::blocking::Client, path: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut next = Some(format!("{base}{path}"));
    while let Some(url) = next.take() {
        let r = admin.get(&url).send().unwrap();
        assert_eq!(r.status(), 200, "{url}");
        next = r
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.split_once('<'))
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(u, _)| {
                if u.starts_with("http") {
                    u.to_owned()
                } else {
                    format!("{base}{u}")
                }
            });
        out.extend(r.json::<Vec<serde_json::Value>>().unwrap());
    }
    out
}

/// A random index below `n`.
fn pick(n: usize) -> usize {
    let mut b = [0u8; 8];
    openssl::rand::rand_bytes(&mut b).unwrap();
    (u64::from_le_bytes(b) % n as u64) as usize
}

/// Three nodes, 8 agents round-robin over them (autosigned PUTs, and an admin revoking
/// now and then), a random node SIGKILLed every 2 s for 20 rounds and started again.
/// Afterwards nothing acknowledged is lost: every certificate answered 201 is served by
/// every node, every revocation answered 204 is 410 on every node and on every node's
/// CRL; no serial twice; every node lists the same; the log has no gap; the webhook got
/// every event.
#[test]
fn nodes_killed_at_random_under_load_lose_nothing_acknowledged() {
    let Some(pg) = Postgres::shared() else { return };
    let (hook, got) = webhook_receiver();
    let c = Cluster::start_with(pg, 3, "", &format!("[events]\nwebhooks = [\"{hook}\"]\n"));
    let (cert, key) = c.admin();
    let anon = client(&c.nodes[0], None);
    let admin = client(&c.nodes[0], Some((&cert, &key)));
    let base_url = |port: u16| format!("https://localhost:{port}");
    let ports = Arc::new(std::sync::RwLock::new(
        c.nodes.iter().map(|n| n.port).collect::<Vec<u16>>(),
    ));
    let first_event = event_ids(&c.nodes[0], &admin, 0)
        .last()
        .copied()
        .unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    // Agents: (issued names, revoked names), as acknowledged.
    let agents: Vec<_> = (0..8)
        .map(|a| {
            let (ports, stop, anon, admin) =
                (ports.clone(), stop.clone(), anon.clone(), admin.clone());
            std::thread::spawn(move || {
                let key = KeyType::EcP256.generate().unwrap();
                let (mut issued, mut revoked, mut tried) = (Vec::new(), Vec::new(), Vec::new());
                let mut turn = a;
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    turn += 1;
                    let port = ports.read().unwrap()[turn % 3];
                    let url = format!("https://localhost:{port}");
                    if i % 10 == 9 && !issued.is_empty() {
                        let name: &String = &issued[pick(issued.len())];
                        if revoked.contains(name) {
                            continue;
                        }
                        let r = admin
                            .delete(format!("{url}/production/certificate/{name}"))
                            .send();
                        if r.is_ok_and(|r| r.status() == 204) {
                            revoked.push(name.clone());
                        } else {
                            // Maybe committed by a node killed before it answered.
                            tried.push(name.clone());
                        }
                        continue;
                    }
                    let name = format!("ag{a}n{i}");
                    let csr = build_csr(&key, &Certname::parse(&name).unwrap(), &[]).unwrap();
                    let r = anon
                        .put(format!("{url}/production/certificate_request/{name}"))
                        .body(csr)
                        .send();
                    match r {
                        Ok(r) if r.status() == 201 => issued.push(name),
                        // A node going away, or the store unavailable: not acknowledged.
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                (issued, revoked, tried)
            })
        })
        .collect();
    // The killer: 20 rounds.
    let mut nodes = c.nodes;
    let config = std::fs::read_to_string(&nodes[0].config).unwrap();
    for round in 0..20 {
        std::thread::sleep(Duration::from_secs(2));
        let k = pick(3);
        sigkill(&nodes[k]);
        let dir = nodes[k].dir.parent().unwrap().to_owned();
        let restarted = Server::start(&dir, &config);
        ports.write().unwrap()[k] = restarted.port;
        nodes[k] = restarted;
        eprintln!("round {round}: node {k} killed and started again");
    }
    stop.store(true, Ordering::SeqCst);
    let (mut issued, mut revoked, mut tried) = (Vec::new(), Vec::new(), BTreeSet::new());
    for a in agents {
        let (i, r, t) = a.join().unwrap();
        issued.extend(i);
        revoked.extend(r);
        tried.extend(t);
    }
    assert!(issued.len() > 200, "only {} issued", issued.len());
    // Give the feeds a second (revocations on every node's CRL > 1 s).
    std::thread::sleep(Duration::from_millis(1200));
    let revoked_set: BTreeSet<&String> = revoked.iter().collect();
    let mut serials = BTreeMap::new();
    // What node 0 answered for each name, which every other node must answer too.
    let mut answered: BTreeMap<String, u16> = BTreeMap::new();
    for (k, node) in nodes.iter().enumerate() {
        let url = base_url(node.port);
        let anon = client(node, None);
        for name in &issued {
            let r = anon
                .get(format!("{url}/production/certificate/{name}"))
                .send()
                .unwrap();
            let status = r.status().as_u16();
            let want = if revoked_set.contains(name) { 410 } else { 200 };
            // A revocation whose answer was lost may or may not have been committed.
            if !tried.contains(name) || revoked_set.contains(name) {
                assert_eq!(status, want, "node {k}: {name}");
            }
            assert_eq!(
                *answered.entry(name.clone()).or_insert(status),
                status,
                "node {k}: {name}"
            );
            if k == 0 && status == 200 {
                let pem = r.bytes().unwrap();
                let x = openssl::x509::X509::from_pem(&pem).unwrap();
                let serial = x
                    .serial_number()
                    .to_bn()
                    .unwrap()
                    .to_hex_str()
                    .unwrap()
                    .to_string();
                assert!(
                    serials.insert(serial, name.clone()).is_none(),
                    "serial twice"
                );
            }
        }
    }
    // Identical listings, and no serial twice in them.
    let admin_of = |node: &Server| client(node, Some((&cert, &key)));
    let lists: Vec<Vec<serde_json::Value>> = nodes
        .iter()
        .map(|n| listing(&base_url(n.port), &admin_of(n), "/production/certificate/"))
        .collect();
    assert_eq!(lists[0], lists[1]);
    assert_eq!(lists[0], lists[2]);
    // Every node's CRL lists every acknowledged revocation.
    let revoked_serials: BTreeSet<String> = lists[0]
        .iter()
        .filter(|s| revoked_set.contains(&s["name"].as_str().unwrap().to_owned()))
        .map(|s| {
            s["serial_number"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_uppercase()
                .trim_start_matches('0')
                .to_owned()
        })
        .collect();
    assert_eq!(
        revoked_serials.len(),
        revoked_set.len(),
        "{:?}",
        lists[0].first()
    );
    for (k, node) in nodes.iter().enumerate() {
        let (pem, _) = production_crl(node, &client(node, None));
        let crl = openssl::x509::X509Crl::from_pem(&pem).unwrap();
        let listed: BTreeSet<String> = crl_serials_hex(&crl)
            .into_iter()
            .map(|h| h.trim_start_matches('0').to_owned())
            .collect();
        let missing: Vec<_> = revoked_serials.difference(&listed).collect();
        assert!(missing.is_empty(), "node {k}'s CRL lacks {missing:?}");
    }
    // The log has no gap, and the webhook got every event after the first start.
    let ids = event_ids(&nodes[0], &admin_of(&nodes[0]), 0);
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "the log has a gap"
    );
    let want: BTreeSet<u64> = ids.into_iter().filter(|&i| i > first_event).collect();
    let delivered = wait_for(Duration::from_secs(60), || {
        let have = received_ids(&got);
        want.is_subset(&have).then_some(have.len())
    });
    let have = received_ids(&got);
    assert!(
        delivered.is_some(),
        "the webhook missed {} of {} events, from {:?}",
        want.difference(&have).count(),
        want.len(),
        want.difference(&have).next()
    );
    eprintln!(
        "20 kills: {} certificates and {} revocations acknowledged, none lost; {} events, all delivered",
        issued.len(),
        revoked.len(),
        want.len()
    );
}

/// The `issued` events of `name` in `env`'s audit log, read through `node`.
fn issued_events(
    node: &Server,
    admin: &reqwest::blocking::Client,
    env: &str,
    name: &str,
) -> Vec<serde_json::Value> {
    let events: Vec<serde_json::Value> = admin
        .get(node.url(&format!("/{env}/events")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    events
        .into_iter()
        .filter(|e| e["certname"] == name && e["kind"] == "issued")
        .collect()
}

/// A `command` issuer whose first call hangs: the node making it is SIGKILLed while it
/// holds the order's lease; the other node takes the order once the lease (60 s) has
/// run out and completes it, with exactly one certificate.
#[test]
fn an_order_held_by_a_node_that_dies_is_completed_by_another() {
    let Some(pg) = Postgres::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_key) = make_ca(dir.path(), "cluster command CA");
    let script = dir.path().join("sign.sh");
    let calls = dir.path().join("calls");
    write_program(
        &script,
        &format!(
            "#!/bin/sh\nset -e\ncat > {d}/req-$$.pem\necho \"$CERTD_ACTION $PPID\" >> {calls}\n\
             if [ $(wc -l < {calls}) -lt 2 ]; then sleep 30; exit 75; fi\n\
             openssl x509 -req -in {d}/req-$$.pem -CA {ca} -CAkey {key} -CAcreateserial -days 1 2>/dev/null\n",
            d = dir.path().display(),
            calls = calls.display(),
            ca = ca.display(),
            key = ca_key.display(),
        ),
    );
    let c = Cluster::start_config(
        pg,
        2,
        &format!(
            "[ca]\nkey_type = \"ec-p256\"\n[environments.cmd.issuer]\ntype = \"command\"\nprogram = \"{}\"\nca_file = \"{}\"\ntimeout = \"60s\"\n",
            script.display(),
            ca.display()
        ),
    );
    let (cert, key) = c.admin();
    let admins: Vec<_> = c
        .nodes
        .iter()
        .map(|n| client(n, Some((&cert, &key))))
        .collect();
    let (csr, _) = csr_for("leased");
    let r = admins[0]
        .put(c.nodes[0].url("/cmd/certificate_request/leased"))
        .body(csr)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = admins[0]
        .post(c.nodes[0].url("/cmd/certificate/"))
        .body("leased")
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    // The node that called the issuer first (the script's parent) holds the lease.
    let caller = wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&calls).ok()?;
        let pid: u32 = text
            .lines()
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        c.nodes.iter().position(|n| n.child.id() == pid)
    })
    .expect("a node called the issuer");
    sigkill(&c.nodes[caller]);
    let killed = Instant::now();
    let other = 1 - caller;
    let done = wait_for(Duration::from_secs(150), || {
        let r = admins[other]
            .head(c.nodes[other].url("/cmd/certificate/leased"))
            .send()
            .ok()?;
        (r.status() == 200).then(Instant::now)
    })
    .expect("the order was never completed");
    let issued = issued_events(&c.nodes[other], &admins[other], "cmd", "leased");
    assert_eq!(issued.len(), 1, "{issued:?}");
    let text = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    eprintln!(
        "order taken over and completed {:?} after its node was killed (lease 60 s)",
        done - killed
    );
}

/// A new CSR sent to another node while one node's worker is calling the issuer
/// (a first call held until the test lets it go) does not free the order for a second
/// worker: the issuer is called by one node at a time, the order is modified once the
/// first call is over, and the one certificate is for the new key.
#[test]
fn a_csr_replaced_on_another_node_mid_call_leaves_the_order_with_one_worker() {
    let Some(pg) = Postgres::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let gate = GatedSigner::new(dir.path());
    let c = Cluster::start_config(
        pg,
        2,
        &format!("[ca]\nkey_type = \"ec-p256\"\n{}", gate.issuer_toml("cmd")),
    );
    let admins = c.admin_clients();
    let put = |k: usize, csr: &[u8]| {
        let r = admins[k]
            .put(c.nodes[k].url("/cmd/certificate_request/moved"))
            .body(csr.to_vec())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    };
    let (first, _) = csr_for("moved");
    put(0, &first);
    let r = admins[0]
        .post(c.nodes[0].url("/cmd/certificate/"))
        .body("moved")
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for(Duration::from_secs(20), || {
        gate.calls.exists().then_some(())
    })
    .expect("a node called the issuer");
    let (second, second_key) = csr_for("moved");
    put(1, &second);
    // Both nodes look at due orders every second or two: freed, the order would be
    // called again by now.
    std::thread::sleep(Duration::from_secs(6));
    let text = std::fs::read_to_string(&gate.calls).unwrap();
    assert_eq!(
        text, "issue\n",
        "the issuer was called again while the first call ran"
    );
    gate.open();
    let pem = wait_for(Duration::from_secs(30), || {
        let r = admins[1]
            .get(c.nodes[1].url("/cmd/certificate/moved"))
            .send()
            .ok()?;
        (r.status() == 200).then(|| r.bytes().unwrap().to_vec())
    })
    .expect("the order was never completed");
    assert_eq!(
        std::fs::read_to_string(&gate.calls).unwrap(),
        "issue\nmodify\n"
    );
    assert_certifies_key(&pem, &second_key);
    let issued = issued_events(&c.nodes[0], &admins[0], "cmd", "moved");
    assert_eq!(issued.len(), 1, "{issued:?}");
}

/// A test network made with `ip netns`: the database's address on this host's loopback
/// interface (10.77.0.1), and per node a namespace joined to this host by a veth pair
/// (10.77.K.2 there, 10.77.K.1 here), routing to the database through it. Removed
/// when dropped.
struct TestNet {
    tag: String,
    nodes: usize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let (ok, _, err) = run(std::process::Command::new("ip").args(args));
    if ok {
        Ok(())
    } else {
        Err(format!("ip {}: {err}", args.join(" ")))
    }
}

impl TestNet {
    fn make(nodes: usize) -> Result<TestNet, String> {
        let tag = format!("cd{}", std::process::id() % 100_000);
        let net = TestNet { tag, nodes: 0 };
        ip(&["addr", "add", "10.77.0.1/32", "dev", "lo"])?;
        let mut net = net;
        for k in 1..=nodes {
            let (ns, here, there) = (
                net.ns(k),
                format!("{}v{k}", net.tag),
                format!("{}p{k}", net.tag),
            );
            ip(&["netns", "add", &ns])?;
            net.nodes = k;
            ip(&["link", "add", &here, "type", "veth", "peer", "name", &there])?;
            ip(&["link", "set", &there, "netns", &ns])?;
            ip(&["addr", "add", &format!("10.77.{k}.1/24"), "dev", &here])?;
            ip(&["link", "set", &here, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns, "ip"];
                all.extend_from_slice(args);
                ip(&all)
            };
            inside(&["addr", "add", &format!("10.77.{k}.2/24"), "dev", &there])?;
            inside(&["link", "set", &there, "up"])?;
            inside(&["link", "set", "lo", "up"])?;
            inside(&[
                "route",
                "add",
                "10.77.0.1/32",
                "via",
                &format!("10.77.{k}.1"),
            ])?;
        }
        Ok(net)
    }

    fn ns(&self, k: usize) -> String {
        format!("{}n{k}", self.tag)
    }

    /// Cuts node `k` off from the database (its packets to it are dropped), or joins it
    /// again.
    fn cut(&self, k: usize, off: bool) {
        let how = if off { "blackhole" } else { "via" };
        let ns = self.ns(k);
        let mut args = vec!["netns", "exec", &ns, "ip", "route", "replace"];
        let gw = format!("10.77.{k}.1");
        if off {
            args.extend_from_slice(&[how, "10.77.0.1/32"]);
        } else {
            args.extend_from_slice(&["10.77.0.1/32", how, &gw]);
        }
        ip(&args).unwrap();
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for k in 1..=self.nodes {
            let _ = ip(&["netns", "del", &self.ns(k)]);
            let _ = ip(&["link", "del", &format!("{}v{k}", self.tag)]);
        }
        let _ = ip(&["addr", "del", "10.77.0.1/32", "dev", "lo"]);
    }
}

/// Node `k` (1-based) of a test network, in its namespace, on 10.77.K.2.
fn start_in(net: &TestNet, k: usize, dir: &Path, config: &str) -> Server {
    let cfg = dir.join("certd.toml");
    std::fs::write(&cfg, config).unwrap();
    let data = dir.join("data");
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &net.ns(k)])
        .arg(env!("CARGO_BIN_EXE_certd"))
        .current_dir(dir)
        .args(["serve", "--listen", &format!("10.77.{k}.2:0"), "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&cfg);
    Server::spawn(cmd, data, cfg)
}

/// Two nodes and the database each on a test host of their own (network namespaces);
/// agents write through both; node 2 is cut off from the database for 8 s mid-load.
/// While cut off it acknowledges no write (503), its webhook lease is taken over; once
/// joined again it catches up by itself (it serves what node 1 issued and refuses what
/// node 1 revoked meanwhile). Afterwards nothing acknowledged is lost.
#[test]
fn a_node_cut_off_from_the_database_acknowledges_nothing_and_catches_up() {
    let required = std::env::var("CERTD_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1");
    let net = match TestNet::make(2) {
        Ok(net) => net,
        Err(e) if !required => {
            eprintln!("skipped: this machine does not let the test make network namespaces: {e}");
            return;
        }
        Err(e) => panic!("network namespaces: {e}"),
    };
    let Some(pg) = Postgres::start_on(Some("10.77.0.1")) else {
        return;
    };
    let db = pg.database();
    let shared = tempfile::tempdir().unwrap();
    let (hook, got) = webhook_receiver_on("10.77.0.1");
    let config = format!(
        "[server]\ndns_alt_names = [\"10.77.1.2\", \"10.77.2.2\"]\n[ca]\nkey_type = \"ec-p256\"\n{AUTOSIGN}[events]\nwebhooks = [\"{hook}\"]\n{}key_file = \"{}\"\n",
        // The statement timeout above the 2 s read lease, as conf/certd.toml asks: a
        // write on node 1 waits for the cut-off node's lease to run out, not 503.
        pg.store_toml(&db, shared.path())
            .replace("host=127.0.0.1", "host=10.77.0.1")
            .replace("statement_timeout = \"2s\"", "statement_timeout = \"5s\""),
        shared.path().join("store.key").display()
    );
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let one = start_in(&net, 1, dirs[0].path(), &config);
    let two = start_in(&net, 2, dirs[1].path(), &config);
    let urls = [
        format!("https://10.77.1.2:{}", one.port),
        format!("https://10.77.2.2:{}", two.port),
    ];
    let (cert, key) = admin(&one);
    let anon = client(&one, None);
    let admin_c = client(&one, Some((&cert, &key)));
    let first_event = event_ids_at(&urls[0], &admin_c, 0)
        .last()
        .copied()
        .unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let cut_window = Arc::new(std::sync::Mutex::new(None::<(Instant, Option<Instant>)>));
    let agents: Vec<_> = (0..4)
        .map(|a| {
            let (stop, anon, urls, window) =
                (stop.clone(), anon.clone(), urls.clone(), cut_window.clone());
            std::thread::spawn(move || {
                let key = KeyType::EcP256.generate().unwrap();
                let mut issued = Vec::new();
                let mut acked_by_cut_node = 0;
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let k = (a + i) % 2;
                    let name = format!("p{a}n{i}");
                    let csr = build_csr(&key, &Certname::parse(&name).unwrap(), &[]).unwrap();
                    let sent = Instant::now();
                    let r = anon
                        .put(format!("{}/production/certificate_request/{name}", urls[k]))
                        .body(csr)
                        .send();
                    if let Ok(r) = r {
                        if r.status() == 201 {
                            issued.push(name);
                            // Sent after the cut began and answered before it ended: a
                            // write node 2 could not have committed.
                            let w = *window.lock().unwrap();
                            if k == 1
                                && w.is_some_and(|(from, to)| {
                                    sent > from + Duration::from_secs(3)
                                        && to.is_none_or(|t| Instant::now() < t)
                                })
                            {
                                acked_by_cut_node += 1;
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                (issued, acked_by_cut_node)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    // Cut off.
    net.cut(2, true);
    *cut_window.lock().unwrap() = Some((Instant::now(), None));
    // Meanwhile node 1 revokes one of the certificates node 2 has served.
    let victim = "victim";
    let (vcert, vkey) = enroll_at(&urls[0], &anon, victim, shared.path());
    std::thread::sleep(Duration::from_secs(4));
    // Node 2 refuses writes: 503 (after at most a statement timeout).
    let (csr, _) = csr_for("during-cut");
    let r = anon
        .put(format!(
            "{}/production/certificate_request/during-cut",
            urls[1]
        ))
        .body(csr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 503, "a write on the cut-off node");
    let r = admin_c
        .delete(format!("{}/production/certificate/{victim}", urls[0]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    // By now (8 s, past the 6 s webhook lease) node 1 holds every lease.
    let webhook_lease = format!("webhook {hook}");
    let one_id = status_at(&urls[0], &admin_c)["cluster"]["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let holds = wait_for(Duration::from_secs(6), || {
        let s = status_at(&urls[0], &admin_c);
        let leases = s["cluster"]["leases"].as_array()?.clone();
        leases
            .iter()
            .find(|l| l["name"] == webhook_lease.as_str())
            .is_some_and(|l| l["holder"].as_str().map(holder_node) == Some(one_id.as_str()))
            .then_some(())
    });
    assert!(
        holds.is_some(),
        "node 1 did not take the webhook's lease over"
    );
    // Joined again.
    net.cut(2, false);
    let joined = Instant::now();
    if let Some(w) = cut_window.lock().unwrap().as_mut() {
        w.1 = Some(joined);
    }
    // It catches up by itself: the revocation made meanwhile is refused by its handshake.
    let caught_up = wait_for(Duration::from_secs(15), || {
        let holder = client(&two, Some((&vcert, &vkey)));
        match holder.get(format!("{}/status", urls[1])).send() {
            Err(_) => Some(joined.elapsed()),
            Ok(r) if r.status() == 403 => Some(joined.elapsed()),
            Ok(_) => None,
        }
    })
    .expect("node 2 never refused the certificate revoked while it was cut off");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let mut issued = Vec::new();
    let mut impossible = 0;
    for a in agents {
        let (i, n) = a.join().unwrap();
        issued.extend(i);
        impossible += n;
    }
    assert_eq!(impossible, 0, "node 2 acknowledged writes while cut off");
    // Nothing acknowledged is lost; both nodes answer alike.
    for url in &urls {
        for name in &issued {
            let r = anon
                .get(format!("{url}/production/certificate/{name}"))
                .send()
                .unwrap();
            assert_eq!(r.status(), 200, "{url}: {name}");
        }
        let r = anon
            .head(format!("{url}/production/certificate/{victim}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 410, "{url}: {victim}");
    }
    let lists: Vec<_> = urls
        .iter()
        .map(|u| listing(u, &admin_c, "/production/certificate/"))
        .collect();
    assert_eq!(lists[0], lists[1]);
    let ids = event_ids_at(&urls[0], &admin_c, 0);
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "the log has a gap"
    );
    let want: BTreeSet<u64> = ids.into_iter().filter(|&i| i > first_event).collect();
    let delivered = wait_for(Duration::from_secs(30), || {
        want.is_subset(&received_ids(&got)).then_some(())
    });
    assert!(delivered.is_some(), "the webhook missed events");
    eprintln!(
        "partition: {} certificates acknowledged, none lost; node 2 refused the revoked certificate {:?} after it was joined again; {} events delivered",
        issued.len(),
        caught_up,
        want.len()
    );
    drop((one, two));
}

/// [`enroll`] through a node by its URL.
fn enroll_at(
    url: &str,
    anon: &reqwest::blocking::Client,
    name: &str,
    dir: &Path,
) -> (PathBuf, PathBuf) {
    let (csr, key) = csr_for(name);
    let r = anon
        .put(format!("{url}/production/certificate_request/{name}"))
        .body(csr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{name}");
    let pem = anon
        .get(format!("{url}/production/certificate/{name}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, pem).unwrap();
    write_private(&k, &key);
    (c, k)
}
