//! # Environments, roles and the native API
//!
//! The resources every face maps onto, who may do what, and the native face's contract.
//!
//!
//! Each environment declared in `conf/certd.toml` gets its own issuing CA, chain and CRL.
//! Global admins also create environments at run time: `PUT /environments/{env}` with
//! JSON settings (the keys of an `[environments.<name>]` table, except that `issuer` is
//! `"local"` or the name of an `[issuers.<name>]` table of `conf/certd.toml`, and
//! `autosign` is a boolean, globs, or `{"policy": NAME}` naming an `[autosign_policies]`
//! entry: no program, path or URL comes from the API; anything else is 400
//! `invalid-settings`) creates its issuing CA
//! under the root (201) or replaces the settings of one created this way (200);
//! `GET /environments` and `GET /environments/{env}` show them (a secret such as a cfssl
//! `auth_key` as `"(set)"`, never its value). The data directory and the store are 0700,
//! the store's files 0600. Their settings live in the
//! store, so a restart keeps them; environments declared in the file are changed there
//! (409). At most `[limits] max_environments` (100) are served, declared and created
//! together; one more is 409 `too-many-environments`. A new environment's client certificates work at once: the next TLS handshake
//! switches to a context whose verify store holds the new CA (OpenSSL's servername
//! callback runs for every ClientHello, with or without SNI).
//! Global admins also take a backup of the running server: `POST /backups` writes one
//! into `[store] backup_dir` on the server's host (201 with its path and counts; 409
//! `backups-not-configured` without one; see [`postgres`](super::postgres), "Copies and
//! backups").
//! Roles, per environment (`tests/suite/tenancy.rs` checks 10 callers × 14 endpoints × 2
//! environments against a written table, among them a global admin's name signed by a
//! tenant's CA and a renewed node's pre-renewal certificate after the node's revocation):
//!
//! - anyone reads certificates, the CA chain, the CRL and requests;
//! - a CSR may be submitted anonymously where `allow_anonymous_csr` is true (default: only
//!   in `production`), by a *member* (an agent whose certificate that environment's CA
//!   issued), or by an admin;
//! - a member reads its own status;
//! - the environment's `admins` (certnames, with a certificate from that environment's CA)
//!   and global admins (a certd certificate carrying `pp_cli_auth`, or a certname in
//!   `[authz] admins`, in either case issued by the CA of an environment in
//!   `[authz] admin_environments`, production by default) sign, revoke, reject, clean and
//!   list; upstream CRLs are for global admins only;
//! - no other environment takes a request for a global admin's certname (400
//!   `reserved-certname`); nobody may request the names of the certificates setup signs
//!   (its admin's and the server's), which are recorded in production like any other
//!   certificate, so they are listed and can be revoked. No environment certifies any
//!   name or address of the server certificate either, as certname or as alternative
//!   name (`reserved-certname`; names compared in lower case, addresses also as DNS
//!   names and IPv4-mapped IPv6, and a renewal of a certificate issued before this rule
//!   is refused alike): every environment's CA chains to the one root, so such
//!   a certificate from any tenant would pose as certd to every agent trusting the root
//!   (`no_environment_certifies_a_name_of_certds_own_server`);
//! - the one root is also why a tenant's certificate for another tenant's node name
//!   verifies for a relying party that anchors its trust in the root (or in another
//!   tenant's whole chain). certd itself tells them apart (a caller belongs to the
//!   environment whose CA issued its certificate); a service outside certd must anchor
//!   its trust in the one environment's issuing CA (a partial chain) to do the same.
//!   Name constraints per environment are not made (not yet);
//! - a revoked client certificate is refused (in the handshake, and per request on
//!   connections opened before) by its serial within the environment whose CA issued
//!   it: serials are unique per environment only and all public, and a back end a
//!   tenant runs could return another environment's admin's serial, whose revocation
//!   would otherwise lock that admin out (`a_revocation_in_one_environment_...`);
//! - a certificate is acted on only by a caller of its rank, whatever the action
//!   (`tests/suite/hostile.rs`, `names_that_hold_authority_...`; `tests/suite/rules.rs`,
//!   `an_environments_admin_signs_nothing_...`). One whose rights reach beyond its
//!   environment (a global admin's name where the CA may vouch for one, certd's own in
//!   production, a name or extension value that a rule admits from any environment:
//!   `certname:NAME`, `extension:NAME=VALUE`) is signed, its pending request replaced or
//!   rejected, and it is revoked or cleaned (both faces, `PUT /clean` too, all or
//!   nothing) by a global admin only: an environment's own admins get 403, for whoever
//!   chooses the key of a request an admin will sign, or puts the server's certificate
//!   on the CRL, acts as far as the certificate reaches. Signing is decided on the CSR
//!   that is signed (the store's write compares the request whole); revoke and clean on
//!   the name and its certificate (its extensions too), reject and delete on the name
//!   and its pending CSR, each on what it acts on alone (a request nobody approved
//!   cannot keep an admin from revoking), and a replacement on both CSRs. A policy or a
//!   sweep signs only the CSR it decided on (409 `request-changed` when another
//!   replaced it meanwhile), and a CSR that would hold authority the order's CSR did
//!   not hold does not join an order under way (409 `order-under-way`: the order
//!   carries out the approval of another). A request that would
//!   hold any authority (those, one of the environment's own `admins`, or a name that a
//!   `member:NAME` of a rule about this environment names) is never autosigned and
//!   never taken by `sign/all` (anyone could otherwise ask for it first and hold that
//!   authority once a policy or a sweep signed it): an admin signs it when named
//!   (`no_policy_or_sweep_signs_...`);
//! - revoked, expired and foreign certificates fail the TLS handshake; on a keep-alive
//!   connection opened before, a certificate revoked or expired since is refused (403) from
//!   its next request on.
//!
//! ### Authorization rules (`conf/auth.toml`)
//!
//! Who may do what is decided by an ordered rules file, like Puppet's `auth.conf`:
//! `[authz] rules` in `certd.toml` names it (relative to `certd.toml`; the shipped
//! `conf/auth.toml` holds the defaults above and documents the format; an empty value uses
//! the same rules compiled into certd). Each `[[rule]]` has a `name`, a literal `path`
//! prefix or a `regex`, optional `methods`, an optional `environment` (a name, or `"$env"`
//! from a capture) and `allow`/`deny` lists of callers: `anyone`, `anonymous`,
//! `anonymous_where_allowed`, `authenticated`, `members`, `admins`, `global_admins`,
//! `member:NAME`, `certname:NAME` (either may be `$group` from the regex) and
//! `extension:NAME=VALUE` (a Puppet short name such as `pp_role`, or a dotted OID).
//!
//! - The first rule whose path and method match decides: `deny` first, then `allow`,
//!   else refused. A request no rule matches is refused (the shipped file ends with a
//!   deny-all rule).
//! - Rules run for every request **before routing**, as Puppet's do, on the path the
//!   router sees (percent-decoded except `%2F`, `%25`, `%2B`; `tests/suite/rules.rs` checks that
//!   re-encoded spellings of a path are decided as the route they reach). So an anonymous
//!   caller's malformed listing query is a 403, not a 400, and an unknown path is a 403
//!   unless some rule admits the caller. A rule about an environment certd does not serve
//!   answers 404 `unknown-environment`.
//! - A denial is a 403 (problem+json; Puppet's plain-text sentence on the Puppet face)
//!   that does not name the rule; the server log line does:
//!   `denied caller=Agent web1@dev method="POST" path="/dev/certificate/" rule=release-bot signs in dev`.
//! - Before the rules, a request other than `GET`, `HEAD` or `OPTIONS` that a browser
//!   says a page of another origin sent is a 403 `cross-site-request` (Puppet's
//!   plain-text sentence on the Puppet face): `Sec-Fetch-Site` other than `same-origin`
//!   or `none`, or an `Origin` other than `https://` and the `Host` it was sent to
//!   (`same-site` and `null` included). A browser holding an admin's client certificate
//!   presents it whichever page asks, and a plain form (`text/plain` JSON reaches the
//!   Puppet face's `sign`) or a `no-cors` fetch needs no preflight; without this, any
//!   page an admin opened could sign, sweep, renew the admin's certificate away or write
//!   backups. The CLI, agents and other clients that are not browsers send neither
//!   header and are not concerned. `Sec-Fetch-Site` decides alone where a browser sends
//!   it (a page of certd's own under `Referrer-Policy: no-referrer` posts forms with
//!   `Origin: null`). This is DESIGN §9's "state changes only same-origin", in place
//!   before the dashboard; ACME, authenticated by JWS and not by the client
//!   certificate (RFC 8555 §6.1 asks servers to allow browser clients), will be left
//!   out of it when it comes.
//! - A malformed rules file (bad TOML, an unknown key, caller or method, a bad regex, a
//!   `$group` the regex lacks, `members` without an environment, two rules with one name,
//!   no rules at all) stops the server at start with `auth.toml:LINE: message`.
//! - `member:NAME` requires a certificate from the rule's environment's CA;
//!   `certname:NAME` accepts one from any environment, so any tenant able to name a node
//!   NAME would match it — prefer `member:`.
//!
//! Example (in `conf/auth.toml`, above the "environment admins" rule): let the node
//! `release-bot` of `staging` sign there and do nothing else.
//!
//! ```toml
//! [[rule]]
//! name = "release-bot signs in staging"
//! regex = "^/(?<env>staging)/certificate/$"
//! methods = ["POST"]
//! environment = "$env"
//! allow = ["member:release-bot", "admins"]
//! ```
//!
//! ## The native API
//!
//! All under `/{env}/`; errors are `application/problem+json` with a stable `code`.
//!
//! | Method & path | Who | Answers |
//! |---|---|---|
//! | `HEAD`/`GET certificate/{name}` | anyone | 200 PEM (`text/plain`, `application/x-pem-file`), DER (`application/pkix-cert`), JSON status (`application/json`), fingerprint (`x-cert/fingerprint;digest=D` or `?digest=D`) · 404 none or pending · 410 revoked (problem with `revoked_at`, `revocation_reason`) |
//! | `GET certificate/ca` | anyone | the chain PEM (issuing CA, root); DER and fingerprint of the issuing CA |
//! | `DELETE certificate/{name}?reason=` | admin | revoke, 204 (also when already revoked) · 404 |
//! | `GET certificate/` | admin | JSON array of status objects; `certname=GLOB`, `regex=RE`, `state=`, `limit=`, `after=`, `Link: <…>; rel="next"` |
//! | `POST certificate/` | admin | sign: body the certname (`text/plain`) or `{"certname", "ttl"}` · 201 + `Location` · 202 when an issuer that answers later has the order (`Location`: the status) · 404 no request · 409 already signed / request invalid / the issuer refused (`issuance-failed`: the back end's own words, such as a program's exit status or stderr, go to the log and to `certificate_status`, never to the caller) |
//! | `HEAD`/`GET certificate_request/{name}` | anyone | 200 PEM (or `application/pkcs10` DER) · 404 · 410 rejected or invalid (reason in the body) |
//! | `PUT certificate_request/{name}` | anyone | 201 new · 200 replaced a pending one (a CSR for the same key, or sent by an admin or by the node with its current certificate; anyone else 409 `already-requested`, also while an order is under way at a remote issuer) · 400 with the CSR rule broken · 409 a certificate exists · 413 too large · 503 `requests-full` (with `Retry-After` here, without on the Puppet face, `manual::puppet`) when it would add a request to an environment that holds `[limits] max_requests` (100,000) of them, pending, refused or failed: nothing stored, and a refused CSR past it is answered and not kept; names the policy signs at once are not held back |
//! | `DELETE certificate_request/{name}` | admin | reject: 204 (the request then answers 410); deleting a rejected request removes it · 404 |
//! | `GET certificate_requests/` | admin | pending and rejected requests, filtered and paged as above |
//! | `GET certificate_status/{name}` | admin, or the agent itself | JSON status object · 404 |
//! | `PUT certificate_status/{name}` | admin | `{"desired_state": "signed"\|"revoked", "ttl"}` · 204 · 202 (order under way) · 404 · 409 |
//! | `DELETE certificate_status/{name}` | admin | clean: revoke if valid, forget certificate and request, 204 · 404 |
//! | `GET certificate_statuses/{pattern}` | admin | one status per name (`*` = all); `?state=` or `?restrict=` (`waiting` = `requested`) |
//! | `GET events?after=ID&limit=N` | admin | the environment's audit log, oldest first: `{id, at, environment, certname, kind, detail}` with `kind` one of requested, replaced, approved, order_updated, issued, renewed, rejected, canceled, error, revoked, cleaned, environment; on PostgreSQL read by an index of the environment's events (its cost is what it returns, however long the log), on sled by reading the log (`manual::postgres`, Schema) |
//! | `GET certificate_revocation_list/ca` | anyone | the issuing CA's CRL: PEM or DER (`application/pkix-crl`), `ETag` + `Last-Modified`, 304 on `If-None-Match` / `If-Modified-Since` |
//! | `GET certificate_revocation_list/root` | anyone | the root's CRL (it lists revoked issuing CAs), the same way |
//!
//! Every answer carries `Vary: Accept`, errors (406 included) too, and a HEAD answer's
//! `Content-Length` is the length GET sends. A client checking the whole chain
//! (`openssl verify -crl_check_all`) takes the chain from `/{env}/certificate/ca` and both
//! CRLs, `/{env}/certificate_revocation_list/ca` and `.../root` (`tests/suite/wire.rs` does so,
//! and runs pkilint on every certificate and CRL certd makes). Kept on purpose: a
//! single-label certname is written as a `DNS:` subject alternative name (pkilint flags
//! it; Puppet has issued them since 6.15 and fleets depend on them), and HEAD on the
//! Puppet face is refused by Puppet's own rules, so monitors use the native face.
//!
//! Plus `GET /status` (and `HEAD`), open to anyone as a load balancer's health check: version, store
//! health and `caller` (the role, certname and environment the server derived from your
//! client certificate); to a global admin also the environments, every issuer with
//! `ready` and why not, and `cluster` (below). Those are kept from everyone else: they
//! name other tenants (which `/metrics` keeps from members too), programs and upstream
//! URLs (an issuer's message), hosts and webhook URLs (the cluster's leases), which
//! may carry a token (`tests/suite/hostile.rs`, `the_server_status_tells_only_...`).
//!
//! Status object: `name, environment, state (requested|signed|revoked|invalid|error),
//! fingerprint, fingerprints{SHA1,SHA256,SHA512,default}, dns_alt_names,
//! subject_alt_names, serial_number, not_before, not_after, sub_status,
//! sub_status_message, error_message, revoked_at, revocation_reason`, and while an order is
//! under way `order{issuer, attempts, approved_at, next_attempt_ms}`.
