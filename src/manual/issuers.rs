//! # Issuers and orders
//!
//!
//! Each environment names who signs (`[environments.<env>.issuer]`, see `conf/certd.toml`):
//!
//! - `local` (default): the environment's own issuing CA, in process; signing answers 201.
//! - `puppet-ca`: an upstream Puppet Server or certd over HTTPS with a client certificate
//!   (`url`, `ca_file`, `cert_file`, `key_file`, `poll_interval`). certd is then a
//!   registration authority: it `PUT`s the CSR upstream and polls `GET certificate/{name}`
//!   until the upstream's admin (or autosign) signs.
//! - `cfssl`: a `cfssl serve` signer (`url`, `ca_file`; `auth_key` switches to `authsign`
//!   with cfssl's HMAC token; `profile`). It receives the hosts certd's CSR policy allowed.
//! - `command`: an external program (`program`, `ca_file`, `args`, `timeout`): the CSR on stdin,
//!   `CERTD_CERTNAME`, `CERTD_ENVIRONMENT`, `CERTD_VALIDITY`, `CERTD_ACTION`
//!   (issue/check/modify/cancel) in its environment; a PEM certificate on stdout with exit
//!   0, exit 75 for "not yet", anything else fails the order. Killed with its process
//!   group at `timeout`; once it exits, whatever it left in its group is killed and its
//!   pipes are read no longer than `timeout` (autosign programs likewise, with
//!   `autosign_timeout`, and at most `[limits] max_policy_runs` at once: 503 beyond).
//!
//! Whoever signs, certd enforces the environment's policy on what comes back: the
//! certificate must carry the CSR's key and name, chain to the back end's `ca_file`
//! (required for every remote type), not be a CA, be valid now and for no longer than
//! asked, have no key usage beyond a leaf's (no certificate or CRL signing; TLS server and
//! client only), and carry only the SANs and extensions the CSR policy allowed. Otherwise
//! the order ends in `error` with the reason (in its status and the log), at once.
//!
//! An array of tables lists several issuers; the first whose `certnames` globs accept the
//! name serves it. Approving a request for an issuer that answers later stores an
//! **order** with the request (issuer, `sub_status`, `plugin_meta`, due time, attempts) and
//! answers 202 once the issuer's first answer is in (or after 5 s): `waiting_for_ca`,
//! `ca_unavailable`, `client_data_issue`, or `issuer_not_ready` when the issuer's last
//! readiness probe (every 2 s, shown in `/status`) failed, or it has not been probed yet
//! (an environment created at run time is probed within those 2 s). A cfssl signer that signs at once
//! gives 201. An order worker calls the issuer again when the order falls due: after the
//! issuer's `retry_after` while it waits, with exponential backoff from it (doubling per
//! consecutive failure, capped at `max_backoff`, each pause 80–100% of nominal) while it is
//! unreachable; once the order has been with its issuer longer than `retry_budget`, the
//! request becomes `error` (410, the reason in the status). A lease in the record keeps an
//! order in one worker's hands at a time; every change is a compare-and-set against the
//! record the worker leased, so a request replaced or deleted meanwhile is never
//! overwritten. Storing the certificate is one of them
//! ([`CertificateStore::issue`](crate::store::CertificateStore::issue) takes the record
//! expected, as the admin's `sign` does with the record it read): what an issuer returns
//! for a request that was rejected and sent again meanwhile, even with the same CSR, or
//! for an order another worker has taken over, is dropped, never stored for the request
//! now there, which nobody approved
//! (`issuers::an_order_result_is_not_stored_for_a_request_that_replaced_its_own`). Due times are stored, so a restart (or a SIGKILL) loses nothing; the
//! issuer may be called again for an order it already answered, which is why back ends are
//! idempotent (`puppet-ca` recognises its own request or certificate upstream by its key).
//!
//! Cancel and modify reach the back end: `DELETE certificate_request` (and clean) calls
//! the issuer's cancel (`puppet-ca`: `DELETE` upstream); a new CSR `PUT` while an order is
//! under way keeps the order and the worker calls the issuer's modify (`puppet-ca`:
//! delete, then submit the new CSR). Sent while a worker is calling the issuer, the new
//! CSR leaves the order in that worker's hands (its lease runs on, so no other node calls
//! the issuer meanwhile); when the call is over its write finds the request replaced,
//! and it gives the lease back at once with what the issuer was told (`plugin_meta`, and
//! that the issuer has the order), so that the next call, on any node, modifies that
//! order instead of issuing a second one
//! (`issuers::a_csr_replaced_mid_call_modifies_the_order_the_issuer_holds`,
//! `cluster::a_csr_replaced_on_another_node_mid_call_leaves_the_order_with_one_worker`;
//! a request replaced again meanwhile is read again, three times at most, and past
//! that the lease runs out). The pending CSR sent again as it is (anyone who may
//! submit for the name can read it and send it back) changes nothing: the order goes
//! on, and the issuer's answer is stored
//! (`issuers::a_pending_csr_sent_again_leaves_its_order_alone`).
//!
//! Every transition is an audit event (`GET /{env}/events`), and each is POSTed as JSON to
//! the `[events] webhooks`, one thread per webhook following the audit log: a slow or
//! dead webhook only falls behind; each event gets `webhook_attempts` tries of at most
//! `webhook_timeout`. Events from before a restart are not re-sent (the log has them).
//!
//! `tests/suite/issuers.rs` runs: a downstream certd in front of an upstream certd (202,
//! `waiting_for_ca`, SIGKILL while waiting, upstream admin signs, restart, the certificate
//! arrives within a poll, verifies against the upstream chain and not the downstream's,
//! one issuance on each side, events and a webhook in order while a never-answering webhook
//! holds nothing up); the upstream stopped (`ca_unavailable`, calls ~1, 2, 4, 4 s apart,
//! `/status` not ready, `error` after a 10 s budget); cancel and modify seen upstream; a
//! real `cfssl serve` from Debian's golang-cfssl, with and without an auth key (and a wrong
//! key refused); a command that first answers 75.
//!
//! Limits, for now: an environment served by a remote issuer still serves its own issuing
//! CA as its chain (`/{env}/certificate/ca`), so agents of such an environment should be
//! given the upstream's chain; revoking a certificate a remote CA issued is recorded (and
//! listed on the environment's CRL) but not sent upstream; the Puppet face answers 204 to
//! `sign` whatever the issuer does (the Puppet CLI knows no 202); the worker looks at
//! pending requests when an order falls due or is nudged, one order at a time.
