//! # Performance: what bounds each figure
//!
//! The figures are in the README's table, with the machine and the commands that
//! measure them. This page says what limits each one and what was done about it; every
//! step was an A/B measurement whose figures are in its commit message.
//!
//! ## RSA-4096 issuance
//!
//! A profile of the server under load (`perf`, DWARF stacks): the signature is ~62% of
//! server CPU (`ossl_rsaz_amm52x40_x2_ifma256`, OpenSSL's AVX-512 IFMA code), the TLS
//! handshake ~9.5%, the CSR's check ~4.5% (an RSA-4096 verification), the store's
//! commit and sled's I/O threads ~7.6%, the rest HTTP, the kernel's loopback TCP and
//! thread switches. Per certificate that is ~1.95 ms of server CPU, of which the
//! signature is ~1.25 ms; the load generator's eight agents take another ~0.44 ms, and
//! the machine is ~97% busy: ~820 certificates/s on two cores.
//!
//! **Why 10× a warm Puppet Server is out of reach on two shared cores.** Puppet
//! Server's JIT keeps improving for some 20,000 certificates, to 105–114/s at 18.1 ms of
//! JVM CPU per certificate (`certd bench issue --warmup 15000` measures it in one
//! invocation). 10× that is ~1,050–1,140/s, or 1.75–1.9 ms of CPU per certificate. The
//! signature alone is 1.3 ms per core (`certd bench sign --concurrency 1`: ~772/s),
//! which leaves 0.45–0.6 ms for the server's handshake, HTTP, CSR check and commit
//! (0.6–0.7 ms) *and* the load generator's half of the handshake (0.47 ms, on the same
//! cores). A server whose only work were the signature would reach
//! 2,000 / (1.3 + 0.47) ≈ 1,130/s. Per certificate, certd uses ~9.5× less server CPU
//! than warm Puppet Server (1.9 against 18.1 ms).
//!
//! What got it there: the CSR's key built directly from its SubjectPublicKeyInfo
//! instead of through OpenSSL 3's decoders (`src/ca/csr_key.rs`); the leaf's
//! TBSCertificate written directly; signing on the HTTP worker instead of the blocking
//! pool; OpenSSL 3.6 linked statically (3.0 has no IFMA code for 2048-bit CRT halves:
//! server CPU per certificate 3.8 → 2.0 ms).
//!
//! ## ECDSA issuance
//!
//! ~0.25 ms of server CPU per certificate: two requests, one CSR check, one signature,
//! a share of one sled transaction and flush. What drives sled's cost is the number of
//! transactions (each seals and writes a log buffer from sled's I/O pool, whose threads
//! are all woken per write), so: one transaction for request and certificate
//! (`CertificateStore::submit_issued`); group commit of concurrent autosigned submissions by the
//! store's committer thread (`certd-commit`), one transaction per environment and one
//! flush per batch; the committer waits, asleep, for as many submissions as its last
//! batch had (at most 500 µs; a lone agent never waits). With 8 keep-alive agents the
//! machine is ~22% idle and sled flushes once per ~2.75 certificates: each agent waits
//! for the flush covering its certificate, so the rate is bounded by that wait as much
//! as by CPU.
//!
//! ## Probes, listings, revocation, start
//!
//! A probe costs ~27 µs of server CPU: TLS read-ahead (one `recv` per request instead of
//! three), the certificate's cached encodings, routing on the `regex` crate's DFA; the
//! rest is mostly the kernel. Listings read `CertSummary` records (the DER lives in a
//! tree of its own, the fingerprints are held as bytes) and the Puppet face streams a
//! page at a time, its JSON written by hand straight from the summaries (byte for byte
//! what serde_json writes of the status's fields, proptested). A revocation appends
//! one entry's encoding to those of the previous CRL, read where they lie in it, so it
//! costs hashing the TBSCertList (SHA-256 over ~4.9 MB with 100,000 entries) and one
//! copy into the new CRL; cleans go 256 names per transaction with one CRL append for
//! all; at start nothing is scanned but the revocations. A CRL is held once, in a shared buffer that
//! the next rebuild and every response body reference (`bytes::Bytes`), and its PEM
//! while it is fetched. certd itself no longer copies it: not for the next rebuild's
//! entries, not to read its number (a rebuild cloned the record, DER and all), not per
//! fetch (each copied it into its body, and the Puppet face concatenated its two-CRL
//! bundle, 6.7 MB of PEM at 100,000 entries, anew). Against the binary before, in one
//! invocation, sled, 100,000 entries: revocation 1.10× and 1.15×, CRL fetches with 8
//! clients 1.11× and 1.26×.
//!
//! ## Memory given back
//!
//! mimalloc gives the memory of a freed block over 512 KiB back to the system only when
//! a later such block is freed at least its purge delay (1 s) after; an idle server
//! frees nothing, so a burst's memory stayed resident. On PostgreSQL with 100,000
//! revoked certificates, `certd bench crl` with eight clients left 112 MB, 46 MB more
//! than one fetch had; `MIMALLOC_PURGE_DELAY=0` showed that all of it was free (and
//! cost revocations 29% of their speed). `main` now frees one such block, barely
//! written, every 5 s, which lets the purge run: the same test leaves 0.2–0.4 MB more
//! than one fetch (3 runs). This rests on how mimalloc v3 (the version Cargo.lock holds)
//! purges: an upgrade must be measured again. The allocator's own call for this
//! (`mi_collect`) is only reachable through `unsafe`.
//!
//! What an idle certd then holds on PostgreSQL, 100,000 revoked certificates: 46.7–51.2
//! MB after a start (the CRL, two sets of revoked serials, the binary's 15 MB); after
//! revocations its certificate cache is full (8 MB of certificates): 52.4–55.5 MB in 3
//! runs. A CRL's PEM (6.7 MB) is made by the first fetch that wants it and dropped once
//! nobody has fetched it for 30 s (`app::crl_view`, `PEM_KEPT_IDLE`; the maintenance
//! thread looks every 10 s): 59.1–62.5 MB while it is held, 52.4–55.9 MB 50 s after
//! the last fetch, by one client or by eight at once (kept for good, it made 60.3–65.8
//! MB against the 64 MB target). Full fetches less than 30 s apart keep it held (a 304
//! does not use it, nor does a `HEAD`, which takes its length from the DER's); a CRL
//! fetched now and then costs its encoding each time (a few ms at 100,000 entries). A
//! response still sending a dropped PEM keeps it, so one made meanwhile is a second
//! copy for that while.
//!
//! The revoked serials (the CRL's, to list each once, and the handshake's) are a
//! `ca::SerialSet`: a 128-bit key each in the table instead of a byte vector, 2.2 MB
//! per 100,000 instead of some 5. Its gain shows only once the allocator gives back
//! what the start freed: with `MIMALLOC_PURGE_DELAY=0`, a start with 100,000 revoked
//! held 34.5 MB against 39.7 with byte vectors; with the default purge, 49.1 MB either
//! way. The 10–15 MB between is free memory the allocator keeps, by mimalloc v3's
//! source (not traced) in the threads that did the start's work: it keeps, per thread
//! and size class, an emptied page (retired) and up to two free ones
//! (`page_full_retain`), and hands them back only when that thread allocates again,
//! which an idle worker does not; the purge thread above reaches memory already handed
//! back. What varies between runs, up to 7 MB, is not traced.
//!
//! ## The load generator
//!
//! `src/cli/bench/` is an OpenSSL client with blocking threads, one connection per
//! thread. It offers the key-exchange groups a Debian Puppet agent does (one X25519 key
//! share), and checks each target's chain once before timing, then connects without
//! re-checking it, as wrk and h2load do. Every run can append JSON lines
//! (`--json FILE`). A benchmark that issues into a data directory makes it bigger for
//! the next one: the listing and start figures come from directories holding exactly
//! what their row says.
