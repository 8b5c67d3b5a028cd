//! # The Puppet face
//!
//!
//! `/puppet-ca/v1/...` and `/status/v1/...` speak Puppet Server 7's CA API (with the
//! 8.x additions) over the `production` environment, so that
//! `puppet agent` / `puppet ssl bootstrap` (7.x) and `puppetserver ca` work unchanged:
//! certificate (with `ca` = the stored bundle byte for byte, `If-Modified-Since` → 304),
//! certificate_revocation_list (the production CRL then the root CRL; `If-Modified-Since`),
//! certificate_request GET/PUT/DELETE, certificate_status GET/PUT/DELETE,
//! certificate_statuses with `?state=`, `PUT /clean`, `/expirations`, `POST /sign` and
//! `/sign/all`, `POST /certificate_renewal` (the caller is its TLS client certificate),
//! `PUT /certificate_revocation_list` (upstream CRLs), and `/status/v1/simple`, `/simple/ca`, `/services` (reporting a CA
//! `service_version` of 8.4.0, so newer CLIs use the bulk endpoints). Bodies are plain text
//! with Puppet's messages; every answer carries `X-Puppet-Version: 8.4.0`.
//!
//! Point an agent at certd:
//!
//! ```text
//! puppet ssl bootstrap --server localhost --serverport 8140 --certname agent1
//! ```
//!
//! Point the `puppetserver ca` CLI at certd with a `puppet.conf` naming certd's admin
//! certificate (`hostcert = DATA/admin/admin.pem`, `hostprivkey = DATA/admin/admin.key`,
//! `localcacert = DATA/ca/production/chain.pem`, `hostcrl` = a copy of
//! `/puppet-ca/v1/certificate_revocation_list/ca`, `ca_server`, `ca_port`), then
//! `puppetserver ca list --all --config that/puppet.conf`. Debian's
//! `ruby-puppetserver-ca-cli` ships the library without Puppet Server's `puppetserver`
//! wrapper; `tests/suite/puppet_clients.rs` shows the one-line wrapper it uses.
//!
//! Autosign is configured per environment (`autosign` and `autosign_timeout` in
//! `conf/certd.toml`) with Puppet's semantics, and applies to both faces. With the
//! built-in CA, an autosigned submission is signed first and stored with its certificate
//! in one step: the policy is asked before the request is stored (not about a submission
//! already seen refused), no request is ever pending beside its fresh certificate, and of
//! concurrent autosigned submissions for one name one gets the certificate (201/200) and
//! the others 409 (`tests/suite/races.rs`). If signing cannot start or fails (503 busy, no
//! issuer, a CA error), the request is stored alone and durably before the error is
//! answered, to be signed later. With an issuer that answers later, the request is stored
//! and its order started, as before.
//!
//! Where certd differs from Puppet Server on purpose:
//!
//! - `DELETE certificate_status/{name}` revokes a valid certificate before forgetting it
//!   (Puppet deletes without revoking, which leaves a valid certificate nobody can revoke;
//!   the CLI's `clean` revokes first anyway). Revoking a name whose certificate was
//!   cleaned answers 404 instead of Puppet's 500: its serial is already on the CRL.
//! - A CSR is validated completely when it is submitted (400 with Puppet's message), not
//!   only at signing time; an invalid CSR never waits to be signed. One the policy
//!   refuses (subject alternative names, extensions) is kept and listed as requested,
//!   as Puppet Server keeps it (`manual::choices`): its status shows its alternative
//!   names as the CSR asks for them and the authorization extensions it asks for,
//!   `GET certificate_request` serves it, and signing it answers 409 with the policy's
//!   message as it reads the CSR now, as Puppet Server's signing does (the real
//!   `puppetserver ca sign` prints it), or, where the policy has changed since, that it
//!   must be submitted again (told only to who may sign that name); `POST /sign` and
//!   `/sign/all` report it in `signing-errors`. A name with a certificate and no
//!   request, or one that is no valid certname, is `no-csr` there. What such a CSR asks
//!   for is shown with control characters and bidirectional overrides escaped
//!   (`\u{1b}`): anyone may submit one, and the CLI prints these values on the admin's
//!   terminal.
//! - `DELETE certificate_request/{name}` is allowed to admins (Puppet's default rules deny
//!   it to everyone).
//! - The shipped rules for the face are Puppet's (`conf/auth.toml`, "puppetlabs ..." rules,
//!   with Puppet's final deny-all, so an unknown route under `/puppet-ca/` is a 403 as on
//!   Puppet Server), except: where Puppet wants `pp_cli_auth`, certd's `admins` also admit
//!   `[authz] admins` and production's own admins; an agent may read its own
//!   `certificate_status`; `PUT certificate_request` follows production's
//!   `allow_anonymous_csr` and membership (Puppet admits anyone).
//! - Serial numbers are 128-bit random (a JSON integer in status objects), not sequential.
//! - The CRL bundle holds the root's CRL too (agents in `chain` mode need one for every
//!   CA), and every CRL is re-issued by itself at half its lifetime; `crl_next_update`
//!   sets the lifetime.
//! - A revoked client certificate fails the TLS handshake at once (no restart), and is
//!   refused on connections opened before the revocation.
//! - Status listings come from the store's summaries (SANs, dates, authorization
//!   extensions kept at issue time); no certificate is re-parsed. A request's CSR is
//!   decoded only when its DER holds the subjectAltName or the authorization arc's OID.
//!
//! - Auto-renewal is on by default (`allow_auto_renewal`, `auto_renewal_cert_ttl` = 90d;
//!   Puppet Server ships it off). Only the name's current, unrevoked certificate can be
//!   renewed. The renewed certificate lives no longer than the one it replaces (an admin's
//!   short `ttl` stays short), and the one it replaces is revoked as `superseded` in the
//!   same transaction (Puppet Server leaves it valid), so it is on the CRL and refused by
//!   the TLS layer before the new one is sent. So that renewing in a loop cannot grow
//!   the CRL, a certificate younger than `min_renewal_age` (by default a tenth of its
//!   lifetime, counted from its issue; agents renew within `hostcert_renewal_interval`,
//!   30 days, of its end) is not renewed: 429 saying in how many seconds, nothing
//!   signed or revoked (Puppet Server has no such bound). The answer has no
//!   `Retry-After`, so a Puppet agent logs the failed renewal and keeps its
//!   certificate: on one, the agent's HTTP client sleeps (up to its run interval) and
//!   asks again, up to 100 times. For the same reason the Puppet face's 503
//!   `requests-full` has none either: a bootstrapping agent waits `waitforcert`.
//!
//! - `PUT /certificate_revocation_list` accepts newer CRLs for the root (made offline with
//!   the root key, e.g. revoking an issuing CA) under Puppet's rules (authority key
//!   identifier required, no delta CRLs, the issuing CA's own CRL never replaced, highest
//!   number wins, signature checked; a CRL naming the issuing CA is checked too and a
//!   forged one refused with 400, though it never replaces certd's own). certd keeps their
//!   entries when it re-issues the root's CRL itself.
