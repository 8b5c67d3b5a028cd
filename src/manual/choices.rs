//! # Choices made where the contract is silent
//!
//!
//! - **Environment names.** At most 54 characters (the design's pattern allows 63): the
//!   issuing CA's common name is `certd CA: <env>` and a common name holds 64. The names
//!   of certd's top-level routes (`puppet-ca`, `status`, `environments`, `metrics`) and of
//!   the faces to come (`dashboard`, `acme`) are not environment names.
//!
//! - **Refused CSRs are kept.** A well-formed CSR, signed by its key and for the right
//!   name, that asks for what the policy forbids (subject alternative names, extensions)
//!   still gets its 400, and is also kept as an `invalid` request with the rule and the
//!   reason (one per name; it replaces an earlier invalid one, never a pending request or
//!   a certificate), logged, and recorded as an `invalid` audit event (once: the same
//!   CSR sent again and refused for the same reason writes and logs nothing more). Puppet 7 agents
//!   read the 400 as "submitted" and wait; the admin sees the request in
//!   `certificate_statuses`, `certd ca list` (with the reason) and, as Puppet Server
//!   shows such a CSR, as requested in `puppetserver ca list` (with its alt names).
//!   Input that is not a valid CSR (malformed, bad signature, another name) is refused
//!   with nothing kept.
//!
//! - **One valid certificate per name.** A renewal revokes its predecessor (`superseded`)
//!   in the transaction that stores the new certificate, rather than once the new one is
//!   first used: the new certificate travels in the answer to the request that revoked
//!   the old one, so the window is one response; a node that loses that response is
//!   locked out visibly (revoked, on the CRL) and is cleaned and bootstrapped again, where
//!   the alternative leaves a valid predecessor that revoke and clean do not see. With
//!   that invariant, revoke and clean of the current certificate leave none valid.
//!
//! - **`allow_duplicate_certs` takes the CSR, not a second certificate.** With it, a new
//!   CSR for a name that holds a valid certificate is stored (Puppet Server's rule), but
//!   signing it, by an admin or by autosign, answers 409 `already-signed` (the Puppet
//!   face's submission, 400) and it stays pending until the old certificate is revoked or
//!   cleaned: Puppet Server would sign it beside the old one, left valid, and certd keeps
//!   one valid certificate per name (above). Signing in place, revoking the old one as
//!   `superseded` as a renewal does, is not built (not yet).
//!
//! - **A CSR over `max_csr_bytes` is a 400 `csr-too-large`**, not a 413: the body was
//!   within `max_body_bytes` (413 beyond it) and the CSR breaks a policy rule, reported
//!   as the other rules are; on the Puppet face every refusal of a submission is a 400.
//!
//! - **Who vouches for a global admin.** A name is only as trustworthy as the CA that
//!   signed it: an environment's admins sign in their environment, so a global admin's
//!   name (or `pp_cli_auth`) counts only in a certificate from a CA named in
//!   `[authz] admin_environments` (production by default). The rule sits where identities
//!   are made (`authz::Resolver`), so no route and no rules file can forget it; refusing
//!   such requests at submission is the second line, not the only one.
//!
//! - **"Everything in it" stops where a certificate's rights leave the environment.**
//!   The contract gives an environment's admin everything in it (section 6). Acting on a
//!   certificate whose rights reach beyond the environment acts beyond it, so those are
//!   a global admin's: signing one, replacing or rejecting its pending request, revoking
//!   or cleaning it, on either face (`App::may_act_on`), where it is a global admin's
//!   name (in an environment whose CA may vouch for one), certd's own (in production),
//!   or a name or extension value that a rule admits from any environment
//!   (`certname:`, `extension:`). Whoever chooses the key a global admin will sign, or
//!   puts the server's certificate on the CRL, acts as far as the certificate reaches.
//!   No policy and no sweep signs a request that would hold any authority (these, an
//!   environment's own `admins`, `member:` names): an admin signs it when named.
//!
//! - **`/status` in two views.** The contract lists environments and issuer readiness
//!   in `/status` (section 3.3) and the cluster in it (section 8), and `/status` is the
//!   load balancer's health check, open to anyone. Anyone gets the version, the store's
//!   health and who the server takes them to be; the environments, the issuers and the
//!   cluster are a global admin's: they name other tenants (kept from members in
//!   `/metrics` too), programs and upstream URLs, hosts, and webhook URLs, which may
//!   carry a token.
//!
//! - **CRL storage.** The store keeps every revocation and, of an environment's CRL, only
//!   its number, dates and entry count; the CRL itself lives in memory. At start it is
//!   re-signed from the revocations: with the same number and dates when the stored count
//!   matches (the store is left unchanged), with the next number when a revocation became
//!   durable without a CRL (a crash between the two). A new CRL's number is flushed before
//!   the CRL is served, so no number is used for two different CRLs.
//! - **Streamed Puppet listings.** `certificate_statuses` longer than one page
//!   (`limits.stream_page`, default 2,500) is sent chunked, a page at a time, so a
//!   listing of any size holds at most three pages in memory (one read, one encoded, one
//!   sent); an error after the first page ends the connection early (the status line
//!   has gone). Not a snapshot: a certificate issued during a
//!   listing may or may not appear, as on Puppet Server.
//! - **CRL encoding.** The openssl crate has no CRL builder. certd encodes the
//!   TBSCertList with the RustCrypto `x509-cert`/`der` types and signs it with OpenSSL
//!   (`src/ca/crl.rs`); no `unsafe`. Tests re-parse every CRL with `openssl crl`.
//! - **Leaf encoding.** A leaf certificate's TBSCertificate is written the same way
//!   (`CaPair::sign_leaf`) and signed by OpenSSL; a unit test checks it byte for byte
//!   against OpenSSL's own `X509` builder for four CA key types, three agent key types,
//!   SANs, Puppet extensions and the admin profile.
//! - **Certnames longer than a common name.** A certname may have up to 255 bytes
//!   (the native API's name rules), and such names work everywhere a name is looked up, but a certificate's
//!   CN holds at most 64 characters (RFC 5280 `ub-common-name`; OpenSSL refuses longer).
//!   A CSR for a longer certname is refused when submitted, 400 `csr-cn-too-long`, and
//!   nothing is stored; before, it was stored and its signing failed with an opaque 500
//!   from OpenSSL. Signing checks the bound again (`certname-too-long-for-certificate`).
//! - **Where autosigned submissions are signed.** When an environment autosigns by
//!   `true` or by globs and the issuer is the built-in CA, the HTTP worker that read the
//!   PUT checks the CSR and signs it, then awaits the store's commit without holding a
//!   thread (answered only once durable, as before). A probe on the same worker can
//!   therefore wait for one CSR check and signature: ~0.1 ms with an ECDSA CA, ~3.5 ms
//!   with an RSA-4096 CA. Everything that may block — an autosign executable or allowlist file, a request
//!   that waits for an admin, an issuer that answers later, a refusal, all signing slots
//!   (`limits.max_pending_signings`) taken — runs on the blocking pool as before.
//! - **OpenSSL built from source.** The default build links OpenSSL 3.6.3 (crate
//!   `openssl-src`, pinned by `Cargo.lock`) statically, for the server, its clients and the
//!   load generator alike; `--no-default-features` links the system's libssl instead
//!   (Debian 12: OpenSSL 3.0). Why: on CPUs with AVX-512 IFMA (this project's machines)
//!   OpenSSL 3.2+ signs RSA-4096 with 52-bit-limb multiplication, which 3.0 does only for
//!   RSA-2048. `certd bench sign` measured RSA-4096 at **1,549 signatures/s** on two threads
//!   against 657–689/s for the system's `openssl speed -multi 2`, and RSA-4096 issuance went
//!   from ~410 to ~730 certs/s (server CPU per certificate 3.8 → 2.0 ms); OpenSSL 3.0's slow
//!   key decoders (a third of a TLS client's handshake here) are also gone. The cost: the
//!   binary does not follow the distribution's OpenSSL security updates; update with
//!   `cargo update -p openssl-src` and rebuild, or build with `--no-default-features` where
//!   the distribution's patch stream matters more than RSA speed. The system's `openssl`
//!   command line stays what the tests re-check certd's output with (a second
//!   implementation). One visible difference: OpenSSL 3.6 writes only version-0 CSRs, so
//!   the unit test for the version-2 CSRs Ruby's OpenSSL writes patches the version in and
//!   signs again.
//! - **TLS key.** The HTTPS key is ECDSA P-256 by default (`server.tls_key_type`), cheap to
//!   handshake with, while the CA keys stay RSA-4096 (`ca.key_type`) as Puppet's do. No TLS
//!   session tickets are sent (Puppet 7 agents stall on late tickets); idle keep-alive
//!   connections close after `server.keep_alive` (5 s).
//! - **Client certificates** are requested but optional. A presented certificate must
//!   chain to the root through one of the environments' issuing CAs, or the handshake
//!   fails. The caller is an *admin* when the certificate carries `pp_cli_auth` = `true` or
//!   its certname is in `[authz] admins`; otherwise an *agent* of the environment whose CA
//!   issued it.
//! - **Server certificate name.** CN is the host name when it is a valid certname (else
//!   `localhost`); SANs are `localhost`, `127.0.0.1`, `::1` and `server.dns_alt_names`.
//! - **CRL lifetime.** `ca.crl_next_update` defaults to five years like Puppet Server,
//!   because Puppet 7 agents never refresh a downloaded CRL; lower it for clients that do.
//!   Each environment gets an empty CRL (number 0) at setup, kept in the store.
//! - **Leaf validity** never extends past the issuing CA's `notAfter`; `notBefore` is
//!   backdated one day as Puppet does.
//! - **Serial numbers** are 16 random bytes (128 bits of entropy), positive and non-zero;
//!   uniqueness per environment is enforced by the store's serial index.
//! - **Native face details.** `?digest=` asks for the fingerprint representation unless
//!   the `Accept` header explicitly prefers another; the `Accept` digest parameter and
//!   `?digest=` take any case and `SHA-256` spellings. Serial numbers in status objects are
//!   uppercase hex strings (a 128-bit serial does not fit a JSON number safely). Times are
//!   RFC 3339 UTC. Unknown query parameters are a 400 `unknown-parameter`; listings page at
//!   most `limits.max_page` (1000) per request. Rejecting a request keeps it as `invalid`
//!   (410) so that probes see the rejection; a second DELETE removes it. Signing
//!   re-validates the stored CSR under the environment's current policy (409 with the rule
//!   when it no longer passes). Clean revokes with reason `cessationOfOperation`.
//! - **Durability.** Every change (submit, sign, reject, revoke, clean) is one store
//!   transaction followed by a flush before the answer (an autosigned submission is one
//!   transaction for request and certificate, `CertificateStore::submit_issued`, then one flush;
//!   concurrent autosigned submissions share that transaction and flush, and none is
//!   answered before the flush covering it; if signing fails, the request is stored and
//!   flushed before the error is answered); a revocation's CRL is rebuilt and
//!   stored inside the same flush, and at start a CRL older than the revocations is
//!   rebuilt (a crash between the two writes). CRL rebuilds are serialised per environment.
//! - **Store.** One sled tree per table (`src/store/schema.rs`), JSON records with bytes in
//!   base64, a schema version key, and every state change — request, certificate, serial
//!   index, revocation, audit entry — in one multi-tree transaction. Schema 2 keeps each
//!   certificate's DER (raw bytes) in a tree of its own, `env/E/certificate_der`, so that
//!   listings read ~700-byte records instead of ~2.6 kB ones; a schema 1 store opens as it
//!   is (it is marked 2, and each record moves its DER out the next time it is written), and
//!   a store of any other version is refused. The audit log's ids
//!   are consecutive (a counter inside the same transaction). `flush` makes a change
//!   durable; the server flushes before answering any change and at shutdown.
//! - **A full disk.** A change the store cannot make durable (an I/O error: `ENOSPC`)
//!   answers 503 `store-unavailable` with `Retry-After`, and `/status` shows
//!   `"store": {"ok": false, "detail": ...}`. sled fails every later call once it has met an
//!   I/O error, and what it holds in memory may include the change that did not reach the
//!   disk, so the store closes the database at once (every call answers 503, reads too) and
//!   its committer thread opens it again from disk after 0.5 s, 1 s, 2 s ... (at most 15 s
//!   apart): only what was made durable comes back, and writes work again by themselves
//!   once there is space. Before every open, a snapshot file sled left half-written
//!   (`snap.N.generating`: sled reads it as the newest and then refuses to open at all) is
//!   removed, with sled's lock held. Measured on a 24 MiB tmpfs (`tests/suite/disk_full.rs`):
//!   371 certificates acknowledged, then 503s, then 201 again within a second of freeing
//!   space, all 371 there.
