//! # Robustness and the data directory
//!
//! ## Robustness
//!
//! - **Crash safety** (`tests/suite/crash.rs`): 24 SIGKILLs at random moments under concurrent
//!   submit/sign/revoke load, including submissions to an autosigning environment; after each restart every acknowledged issuance is there and
//!   verifies, every acknowledged revocation is on the CRL, serials are unique, nothing is
//!   both pending and signed, the CRL lists exactly the revoked serials, and the audit log
//!   has no gap. Removing the flush before a signing's answer makes it fail.
//! - **Races** (`tests/suite/races.rs`, plus 50 concurrent signings in `tests/suite/native_api.rs`):
//!   sign vs reject, revoke vs clean, simultaneous submissions (both faces), replacement
//!   during signing: one winner, never a 5xx.
//! - **Hostile input** (`fixtures/hostile/`, `tests/suite/hostile.rs`): 182 raw requests, each a
//!   4xx with a stable code, the server still answering, the store unchanged.
//! - **Limits** (all in `conf/certd.toml`): body (`limits.max_body_bytes`, 413), headers
//!   (`limits.max_header_bytes`, 431), CSR size, pattern length, page size; request-head
//!   and body timeouts (`server.request_timeout`, `server.body_timeout`, 408) so slow
//!   clients cannot hold a connection with their first request, and any answer given before its request's body
//!   ended (a 408, a 413, a refusal, a handler that reads no body, such as `GET` with a
//!   chunked body) closes the connection, since actix would otherwise keep it open to
//!   drain a stalled body with no timer (`http::body::close_unread`;
//!   `hostile::a_body_that_times_out_closes_its_connection`); idle keep-alive (`server.keep_alive`).
//!   actix times a connection's request head only for its first request, and never a
//!   response's write, so certd watches every connection itself (`http::conn`): while
//!   no request of it is being worked on, a connection that has had no request for
//!   `keep_alive` plus `request_timeout`, and whose socket has sent nothing for as
//!   long, is shut down: its next head is late or its answer is not being taken
//!   (`hostile::a_connection_that_stalls_between_requests_is_closed`: one byte of a
//!   second request, a head trickled a byte every 700 ms, 4,000 answers asked for and
//!   never read; each held its connection past 20 s before, is closed within 8 s now;
//!   a body arriving over 6 s within `body_timeout` is still answered;
//!   `hostile::a_download_slower_than_the_bound_is_not_cut`). Each watched
//!   connection takes a second descriptor, and certd raises its open-file limit to the
//!   hard limit at start (logged; programs it runs inherit it). Connections
//!   per worker (`server.max_connections`); signings under way
//!   (`limits.max_pending_signings`, 503 `busy` with `Retry-After` after a 5 s wait).
//!   `tests/suite/limits.rs` covers slow clients, graceful shutdown and key hygiene.
//! - **Not bounded by certd yet** (DoS review; each needs the listed mitigation in
//!   front of certd or is accepted for now):
//!   - A response is copied per connection (a CRL of 100,000 entries is 6.7 MB); a
//!     client that reads slowly, but reads (one segment within each `keep_alive` plus
//!     `request_timeout`), holds that copy and its connection until it is taken: the
//!     watch asks whether the socket sends, not how fast.
//!   - Anonymous submission (production's default, as Puppet's) has no rate per source.
//!     What it can store is bounded: an environment holds at most `[limits]
//!     max_requests` requests (pending, refused or failed; 503 `requests-full` past it,
//!     `limits::an_environment_holds_a_bounded_number_of_requests`), counted from the
//!     store at most once a second per environment, so concurrent submissions on other
//!     nodes may pass it by a second's worth. Once full, new agents wait (Puppet agents
//!     retry) until an admin signs, rejects and deletes, or cleans. A refused CSR sent
//!     again writes nothing, and a refusal's message is bounded
//!     (`hostile::a_refused_csr_sent_again_...`).
//!   - A renewal revokes its predecessor, so each grows the CRL by one entry; a
//!     certificate is renewed only once it has lived `min_renewal_age` (a tenth of its
//!     lifetime by default: at most ten renewals per lifetime per agent;
//!     `hostile::a_certificate_is_renewed_only_once_it_has_lived_a_while`). Entries of
//!     certificates past their end stay on the CRL.
//!   - A filtered listing (`?state=`, a pattern) reads the environment until it has a
//!     page of matches: a filter nothing matches reads it all.
//!   - TLS handshakes in progress are actix's default (256 per worker, 3 s each);
//!     client-initiated renegotiation is refused. Denials are logged for anyone who
//!     asks (their path cut at 256 bytes).
//! - **Secrets**: key files are written 0600 and certd refuses to start when one it loads
//!   is readable by others; `Debug` of keys and CAs is redacted; a full run at
//!   `RUST_LOG=trace` is checked for key material in logs, responses and CLI output.
//! - **Fuzzing** (`tests/fuzz/`, libFuzzer via `cargo fuzz`, nightly toolchain): the CSR
//!   parser, names/digests/reasons/durations, `Accept` negotiation, listing queries
//!   (glob/regex) and uploaded CRLs. Run one with
//!   `cargo +nightly fuzz run --fuzz-dir tests/fuzz csr -- -max_total_time=150`; the corpus
//!   is kept in `tests/fuzz/corpus/`. Not part of `cargo test`.
//!
//! ## Data directory
//!
//! ```text
//! ca/root.pem  ca/root.key                  the root CA
//! ca/<env>/ca.pem  chain.pem  ca.key        each environment's issuing CA (chain = issuing CA, root)
//! tls/server.pem  tls/server.key            the HTTPS server certificate (issued by production)
//! admin/admin.pem  admin/admin.key          an admin client certificate with pp_cli_auth
//! store/                                    sled
//! ```
//!
//! Every `.key` file is written with mode 0600, and certd refuses to start when a key it
//! loads is readable by group or others. Files are written atomically (temporary file,
//! fsync, rename). `ca/root.pem` is written last: a setup interrupted before it is redone
//! from scratch by the next run. An environment declared in the config that has no CA yet
//! gets one at the next start.
