//! Environments created at run time: `PUT /environments/{env}` creates one with its own
//! issuing CA under the root; a certificate signed there verifies against its chain and
//! not production's; a restart keeps it.

use std::process::Command;

use crate::common::*;
use serde_json::Value;

const CONFIG: &str = "[ca]\nkey_type = \"ec-p256\"\n";

#[test]
fn environments_created_through_the_api_have_their_own_chain_and_survive_a_restart() {
    let (api, dir) = Api::start(CONFIG);
    let url = api.url("/environments/dev");
    assert_eq!(api.anon.put(&url).body("{}").send().unwrap().status(), 403);
    let r = api
        .admin
        .put(&url)
        .body(r#"{"autosign": true}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/environments/dev");
    let created: Value = r.json().unwrap();
    assert_eq!(created["source"], "api");
    assert_eq!(created["settings"]["autosign"], true);

    // Its chain: its own issuing CA, then the same root.
    let chain = |env: &str| {
        api.anon
            .get(api.url(&format!("/{env}/certificate/ca")))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let (dev, prod) = (chain("dev"), chain("production"));
    assert_ne!(dev, prod);
    let root = std::fs::read_to_string(api.server.dir.join("ca/root.pem")).unwrap();
    assert!(dev.ends_with(&root));
    assert!(api.server.dir.join("ca/dev/ca.key").is_file());

    // A CSR signed there (autosign) verifies against dev's chain, not production's.
    let (csr, web1_key) = csr_for("web1");
    assert_eq!(
        api.anon
            .put(api.url("/dev/certificate_request/web1"))
            .body(csr.clone())
            .send()
            .unwrap()
            .status(),
        403,
        "no anonymous CSRs outside production by default"
    );
    assert_eq!(
        api.admin
            .put(api.url("/dev/certificate_request/web1"))
            .body(csr)
            .send()
            .unwrap()
            .status(),
        201
    );
    let pem = api
        .anon
        .get(api.url("/dev/certificate/web1"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let write = |n: &str, b: &[u8]| {
        let p = dir.path().join(n);
        std::fs::write(&p, b).unwrap();
        p
    };
    let (cert, dev_chain, prod_chain) = (
        write("web1.pem", &pem),
        write("dev.pem", dev.as_bytes()),
        write("prod.pem", prod.as_bytes()),
    );
    assert!(
        run(Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&dev_chain)
            .arg(&cert))
        .0
    );
    assert!(
        !run(Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&prod_chain)
            .arg(&cert))
        .0
    );

    // Its agents are recognised at once, without a restart: with SNI (reqwest, to
    // "localhost") and without (openssl s_client to 127.0.0.1, -noservername).
    let key = write("web1.key", &web1_key);
    let agent = client(&api.server, Some((&cert, &key)));
    let me: Value = agent
        .get(api.url("/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        me["caller"],
        serde_json::json!({"role": "agent", "certname": "web1", "environment": "dev"})
    );
    let mut s_client = Command::new("openssl");
    s_client
        .args([
            "s_client",
            "-quiet",
            "-noservername",
            "-connect",
            &format!("127.0.0.1:{}", api.server.port),
            "-CAfile",
        ])
        .arg(&prod_chain)
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = s_client.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"environment\":\"dev\""),
        "without SNI: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // New settings for it; production's are the configuration file's.
    let r = api
        .admin
        .put(&url)
        .body(r#"{"autosign": false, "admins": ["ops1"]}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = api
        .admin
        .put(api.url("/environments/production"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (409, "declared-in-config".into()));
    let r = api
        .admin
        .put(api.url("/environments/qa"))
        .body(r#"{"autosgn": true}"#)
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "bad-json".into()));
    let r = api
        .admin
        .put(api.url("/environments/Bad.Name"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(problem_code(r), (400, "invalid-environment".into()));
    assert_eq!(
        api.anon
            .get(api.url("/environments"))
            .send()
            .unwrap()
            .status(),
        403
    );
    let names: Vec<String> = api
        .admin
        .get(api.url("/environments"))
        .send()
        .unwrap()
        .json::<Vec<Value>>()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["dev", "production"]);

    // A restart keeps the environment, its CA, its settings and its certificates.
    let data = api.server.dir.clone();
    let config = api.server.config.clone();
    assert!(api.server.terminate().success());
    let server = Server::start_with(dir.path(), &["--config", config.to_str().unwrap()]);
    let api = Api::of(server);
    let chain = |env: &str| {
        api.anon
            .get(api.url(&format!("/{env}/certificate/ca")))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    assert_eq!(chain("dev"), dev);
    let v: Value = api
        .admin
        .get(api.url("/environments/dev"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["settings"]["autosign"], false);
    assert_eq!(v["settings"]["admins"], serde_json::json!(["ops1"]));
    assert_eq!(api.head("/dev/certificate/web1"), 200);
    assert!(data.join("ca/dev/ca.pem").is_file());
}
