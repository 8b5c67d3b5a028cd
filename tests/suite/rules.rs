//! The authorization rules file (`[authz] rules`, `conf/auth.toml`): a site rule that
//! grants one named node the right to sign in one environment, denials logged with the
//! rule that decided them, and malformed files stopping the server at start.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use certd::ca::{build_csr, Certname, KeyType};

/// The site's rule, put in front of the shipped rules.
const RELEASE_BOT: &str = r#"
[[rule]]
name = "release-bot signs in dev"
regex = "^/(?<env>dev)/certificate/$"
methods = ["POST"]
environment = "$env"
allow = ["member:release-bot", "admins"]
"#;

fn shipped_rules() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/auth.toml")).unwrap()
}

/// Submits a CSR for `name` in `env` as the global admin; with `sign`, signs it too and
/// writes the certificate and key under `dir`.
fn request(api: &Api, dir: &Path, env: &str, name: &str, sign: bool) -> (PathBuf, PathBuf) {
    let key = KeyType::EcP256.generate().unwrap();
    let csr = build_csr(&key, &Certname::parse(name).unwrap(), &[]).unwrap();
    let r = api
        .admin
        .put(api.url(&format!("/{env}/certificate_request/{name}")))
        .body(csr)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "submit {name} in {env}");
    let (cert, keyf) = (
        dir.join(format!("{name}@{env}.pem")),
        dir.join(format!("{name}@{env}.key")),
    );
    if sign {
        let r = api
            .admin
            .post(api.url(&format!("/{env}/certificate/")))
            .body(name.to_owned())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "sign {name} in {env}");
        let pem = api
            .anon
            .get(api.url(&format!("/{env}/certificate/{name}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        std::fs::write(&cert, pem).unwrap();
        std::fs::write(&keyf, key.to_pem().unwrap()).unwrap();
    }
    (cert, keyf)
}

#[test]
fn a_rules_file_grants_a_named_certname_the_right_to_sign_in_one_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("site-auth.toml"),
        format!("{RELEASE_BOT}\n{}", shipped_rules()),
    )
    .unwrap();
    let config =
        format!("{FAST_CONFIG}\n[authz]\nrules = \"site-auth.toml\"\n\n[environments.dev]\n");
    let server = Server::start(dir.path(), &config);
    let api = Api::of(server);
    let files = dir.path();
    let bot = request(&api, files, "dev", "release-bot", true);
    let web1 = request(&api, files, "dev", "web1", true);
    // The same name from production's CA is not dev's release-bot.
    let bot_prod = request(&api, files, "production", "release-bot", true);
    for (env, name) in [
        ("dev", "n1"),
        ("dev", "n2"),
        ("dev", "n3"),
        ("production", "p1"),
    ] {
        request(&api, files, env, name, false);
    }
    let bot = client(&api.server, Some((&bot.0, &bot.1)));
    let web1 = client(&api.server, Some((&web1.0, &web1.1)));
    let bot_prod = client(&api.server, Some((&bot_prod.0, &bot_prod.1)));
    let sign = |c: &reqwest::blocking::Client, env: &str, name: &str| {
        c.post(api.url(&format!("/{env}/certificate/")))
            .body(name.to_owned())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };

    // Granted: release-bot of dev signs in dev, and the certificate is there.
    assert_eq!(sign(&bot, "dev", "n1"), 201);
    assert_eq!(api.head("/dev/certificate/n1"), 200);
    // Nothing more than that.
    assert_eq!(sign(&bot, "production", "p1"), 403, "not in production");
    let r = bot.get(api.url("/dev/certificate/")).send().unwrap();
    assert_eq!(r.status(), 403, "listing is not signing");
    let r = bot.delete(api.url("/dev/certificate/n1")).send().unwrap();
    assert_eq!(r.status(), 403, "revoking is not signing");
    // Not another member of dev, nor the same name from production's CA.
    assert_eq!(sign(&web1, "dev", "n2"), 403);
    assert_eq!(sign(&bot_prod, "dev", "n2"), 403);
    let r = api
        .anon
        .post(api.url("/dev/certificate/"))
        .body("n2")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().unwrap();
    assert!(
        !body.contains("release-bot") && !body.contains("rule"),
        "the body does not name the rule: {body}"
    );
    // The rule's own `admins` still works, and n2/n3 are still pending.
    assert_eq!(sign(&api.admin, "dev", "n2"), 201);
    assert_eq!(api.head("/dev/certificate/n3"), 404);

    let (status, log) = api.server.terminate_with_log();
    assert!(status.success());
    // Each denial names the rule that decided it.
    let denials: Vec<&str> = log.lines().filter(|l| l.contains("denied")).collect();
    assert!(
        denials
            .iter()
            .any(|l| l.contains("web1@dev") && l.contains("release-bot signs in dev")),
        "web1's refusal names the site rule:\n{log}"
    );
    assert!(
        denials.iter().any(|l| l.contains("release-bot@dev")
            && l.contains("/dev/certificate/n1")
            && l.contains("rule=environment admins")),
        "the revocation's refusal names the shipped rule:\n{log}"
    );
}

/// Runs `certd serve` with `rules` as its rules file; it must exit (within 30 s) with
/// an error. Returns stderr.
fn serve_with_rules(rules: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auth.toml"), rules).unwrap();
    let config = dir.path().join("certd.toml");
    std::fs::write(
        &config,
        format!("{FAST_CONFIG}\n[authz]\nrules = \"auth.toml\"\n"),
    )
    .unwrap();
    let (ok, _, err) = run(Command::new("timeout")
        .arg("30")
        .arg(env!("CARGO_BIN_EXE_certd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data")));
    assert!(!ok, "certd started with rules:\n{rules}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is written before the rules are read"
    );
    err
}

#[test]
fn a_malformed_rules_file_stops_the_server_naming_the_line() {
    let rule = |body: &str| format!("# site rules\n\n[[rule]]\nname = \"r\"\n{body}\n");
    for (rules, line, what) in [
        // line 6: an unknown caller.
        (
            rule("path = \"/\"\nallow = [\"anyone\",\n  \"everybody\"]"),
            7,
            "everybody",
        ),
        (rule("regex = \"^/(unclosed\"\nallow = []"), 5, "regex"),
        (
            rule("path = \"/\"\nallow = []\nmethods = [\"FETCH\"]"),
            7,
            "FETCH",
        ),
        (rule("path = \"/\"\nallow = []\nwho = [\"x\"]"), 7, "who"),
        (
            rule("path = \"/\"\nallow = [\"members\"]"),
            3,
            "environment",
        ),
        (
            rule("path = \"/\"\nallow = [\"member:$name\"]\nenvironment = \"dev\""),
            6,
            "$name",
        ),
        (
            rule("path = \"/\"\nallow = [\"extension:pp_nope=1\"]"),
            6,
            "pp_nope",
        ),
        (
            rule("path = \"/\"\nallow = [\"certname:Bad Name\"]"),
            6,
            "Bad Name",
        ),
        (rule("allow = []"), 3, "path and regex"),
        (rule("path = \"/\"\nallow = [\n"), 8, "expected"),
        (
            format!(
                "{}{}",
                rule("path = \"/\"\nallow = []"),
                rule("path = \"/x\"\nallow = []")
            ),
            10,
            "two rules",
        ),
        ("# nothing\n".to_owned(), 1, "no [[rule]]"),
    ] {
        let err = serve_with_rules(&rules);
        assert!(
            err.contains(&format!("auth.toml:{line}:")) && err.contains(what),
            "want line {line} and {what:?} in:\n{err}\nfor rules:\n{rules}"
        );
    }
}

/// The rules see the path as the router does: an encoding that reaches a route is
/// decided as that route, and one that reaches none is refused.
#[test]
fn encoded_paths_are_decided_as_the_route_they_reach() {
    let (api, _dir) = Api::start(FAST_CONFIG);
    api.issue("victim");
    // Anonymous, each spelling of an admin-only resource is refused.
    for raw in [
        "/production/certificate_status/victim",
        "/production/certificate_st%61tus/victim",
        "/production/%63ertificate_status/victim",
        "/%70roduction/certificate_status/victim",
        "/production%2Fcertificate_status/victim",
        "//production/certificate_status/victim",
        "/production/./certificate_status/victim",
        "/production/certificate/../certificate_status/victim",
        "/production/certificate_statuses/%2A",
    ] {
        assert_eq!(curl_status(&api.server, "GET", raw, None), 403, "{raw}");
    }
    // As admin, the encoded spellings reach the route.
    let admin_get = |raw: &str| {
        let (cert, key) = admin(&api.server);
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--path-as-is",
                "--cacert",
            ])
            .arg(api.server.chain())
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg(api.url(raw))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(admin_get("/production/certificate_st%61tus/victim"), "200");
    assert_eq!(admin_get("/%70roduction/certificate_status/victim"), "200");
    // And what anyone may read stays readable however it is spelt.
    assert_eq!(
        curl_status(&api.server, "GET", "/production/certific%61te/victim", None),
        200
    );
}

/// A server with the shipped rules behind two site rules: `release-bot` signs in
/// `member_env` (`member:`), and `auditor` (`certname:`) and any certificate with
/// `pp_role=deployer` (`extension:`) list every environment. `envs` declares the
/// environments.
fn singling_rules_server(dir: &Path, member_env: &str, envs: &str) -> Api {
    let site = format!(
        r#"
[[rule]]
name = "release-bot signs in {member_env}"
path = "/{member_env}/certificate/"
methods = ["POST"]
environment = "{member_env}"
allow = ["member:release-bot", "admins"]

[[rule]]
name = "auditors list everywhere"
regex = "^/[^/]+/certificate_statuses/"
methods = ["GET"]
allow = ["certname:auditor", "extension:pp_role=deployer", "admins"]
"#
    );
    std::fs::write(
        dir.join("site-auth.toml"),
        format!("{site}\n{}", shipped_rules()),
    )
    .unwrap();
    let config = format!("{FAST_CONFIG}\n[authz]\nrules = \"site-auth.toml\"\n\n{envs}");
    Api::of(Server::start(dir, &config))
}

/// A CSR for `name`, asking for Puppet's `pp_role` extension with `role` if given.
fn csr_with_role(name: &str, role: Option<&str>) -> Vec<u8> {
    const PP_ROLE: &str = "1.3.6.1.4.1.34380.1.1.13";
    let csr = match role {
        Some(r) => csr_with(
            name,
            &["-addext", &format!("{PP_ROLE}=ASN1:UTF8String:{r}")],
        ),
        None => csr_for(name),
    };
    csr.0
}

/// A rule that singles out a certname (`member:NAME`, `certname:NAME`) or an extension
/// value (`extension:NAME=VALUE`) in its allow list gives a certificate with it what the
/// rule grants: no policy signs a request for such a name, or one asking for such an
/// extension, and Puppet's sign-all passes it over (anyone could otherwise ask first and
/// hold what the rule grants once a policy or a sweep signed). An admin signs it when
/// named; other names and values are autosigned as before.
#[test]
fn no_policy_or_sweep_signs_what_a_rule_singles_out() {
    let dir = tempfile::tempdir().unwrap();
    let api = singling_rules_server(
        dir.path(),
        "production",
        "[environments.production]\nautosign = true\n\
         [environments.dev]\nautosign = true\nallow_anonymous_csr = true\n",
    );
    let put = |env: &str, name: &str, role: Option<&str>| {
        let csr = csr_with_role(name, role);
        let r = api
            .anon
            .put(api.url(&format!("/{env}/certificate_request/{name}")))
            .body(csr)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{env} {name} {role:?}");
    };
    let singled = [
        ("production", "release-bot", None),
        ("production", "auditor", None),
        ("dev", "auditor", None),
        ("production", "web1", Some("deployer")),
        ("dev", "web2", Some("deployer")),
    ];
    for (env, name, role) in singled {
        put(env, name, role);
        assert_eq!(
            api.head(&format!("/{env}/certificate/{name}")),
            404,
            "{env} {name} {role:?} was autosigned"
        );
    }
    sign_all(&api.server, &api.admin);
    for (env, name, role) in singled {
        assert_eq!(
            api.head(&format!("/{env}/certificate/{name}")),
            404,
            "{env} {name} {role:?} was signed by sign-all"
        );
    }
    // release-bot is singled out in production only; other roles are nobody's.
    put("dev", "release-bot", None);
    put("production", "web3", Some("web"));
    for (env, name) in [("dev", "release-bot"), ("production", "web3")] {
        assert_eq!(
            api.head(&format!("/{env}/certificate/{name}")),
            200,
            "{env} {name}"
        );
    }
    // Named, an admin signs it.
    assert_eq!(api.sign("web1"), 201);
}

/// A certificate that a rule admits from any environment (`certname:NAME`,
/// `extension:NAME=VALUE`) holds rights beyond the environment that issues it: an
/// environment's own admin may not sign one (403), a global admin may. What a rule
/// gives within one environment (`member:NAME`) is that environment's admins' to sign.
#[test]
fn an_environments_admin_signs_nothing_whose_rights_reach_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let api = singling_rules_server(
        dir.path(),
        "dev",
        "[environments.dev]\nadmins = [\"devadmin\"]\nallow_anonymous_csr = true\n\
         allow_duplicate_certs = true\n",
    );
    let files = dir.path();
    let (cert, key) = request(&api, files, "dev", "devadmin", true);
    let devadmin = client(&api.server, Some((&cert, &key)));
    let deployer = csr_with_role("web2", Some("deployer"));
    let auditor = csr_with_role("auditor", None);
    let bot = csr_with_role("release-bot", None);
    for (name, csr) in [
        ("web2", &deployer),
        ("auditor", &auditor),
        ("release-bot", &bot),
    ] {
        let r = api
            .anon
            .put(api.url(&format!("/dev/certificate_request/{name}")))
            .body(csr.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{name}");
    }
    let sign = |who: &reqwest::blocking::Client, name: &str| {
        who.post(api.url("/dev/certificate/"))
            .body(name.to_owned())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    for name in ["web2", "auditor"] {
        assert_eq!(sign(&devadmin, name), 403, "dev's admin signed {name}");
        assert_eq!(api.head(&format!("/dev/certificate/{name}")), 404);
    }
    assert_eq!(sign(&devadmin, "release-bot"), 201, "dev's own release-bot");
    // Nor may it reject such a pending request, or revoke such a certificate: what
    // each holds is read from the request or the certificate, not the name alone.
    let reject = devadmin
        .delete(api.url("/dev/certificate_request/web2"))
        .send()
        .unwrap();
    assert_eq!(reject.status(), 403, "dev's admin rejected web2's request");
    for name in ["web2", "auditor"] {
        assert_eq!(sign(&api.admin, name), 201, "the global admin signs {name}");
    }
    let revoke = devadmin
        .delete(api.url("/dev/certificate/web2"))
        .send()
        .unwrap();
    assert_eq!(revoke.status(), 403, "dev's admin revoked web2");
    assert_eq!(api.head("/dev/certificate/web2"), 200);
    // A request nobody approved (anyone may send one beside a certificate here) does
    // not keep dev's admin from revoking that certificate.
    let r = api
        .anon
        .put(api.url("/dev/certificate_request/release-bot"))
        .body(csr_with_role("release-bot", Some("deployer")))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let revoke = devadmin
        .delete(api.url("/dev/certificate/release-bot"))
        .send()
        .unwrap();
    assert_eq!(revoke.status(), 204, "dev's own release-bot");
}
