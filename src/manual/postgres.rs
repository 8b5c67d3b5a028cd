//! # The PostgreSQL store
//!
//! `[store] backend = "postgres"` puts the whole store in a PostgreSQL database
//! ([`PgStore`]); sled stays the embedded default and the two set-up commands of the
//! README need no database. Every capability has exactly the sled store's outcomes:
//! `tests/suite/store_model.rs` runs the same random operation sequences against sled,
//! PostgreSQL and the in-memory model and compares every answer and the final contents.
//!
//! ## Schema
//!
//! Numbered migrations are compiled into the binary (`src/store/pg/migrations.rs`) and
//! applied at start under an advisory lock, so two nodes starting together migrate once;
//! `certd_schema_version` records what was applied. A database whose schema is newer
//! than the binary refuses to start, naming both versions. A database user that may not
//! create tables gets a message saying so and naming `certd store schema`, which prints
//! the whole schema as SQL for a DBA to apply (then grant the user SELECT, INSERT,
//! UPDATE, DELETE on the tables; `tests/suite/postgres.rs` does exactly that).
//! Storage settings, which change how rows are kept and not what they hold, are not
//! migrations: certd applies them after migrating where it owns the tables, and
//! otherwise logs the `ALTER TABLE` a DBA may run (`STORAGE`; below, under
//! Performance). A database a DBA set up for an earlier schema version is not migrated
//! by a user that does not own its tables either: the message then names `certd store
//! schema --from N`, N the version the database holds, which prints only the migrations
//! after it (and the storage settings); the DBA applies it and grants the user the new
//! tables too. What is printed first checks that the database holds version N (0 for
//! the whole schema), so applied to another it fails and, one transaction, changes
//! nothing.
//!
//! The invariants are constraints, not code:
//!
//! | invariant | constraint |
//! |---|---|
//! | a serial is used once per environment | primary key of `certd_serials (env, serial)` |
//! | a name has at most one current certificate | primary key of `certd_certificates (env, certname)` |
//! | a name has at most one request | primary key of `certd_requests (env, certname)` |
//! | a certificate's serial is indexed | foreign key `certd_certificates → certd_serials` |
//! | a revocation names an issued serial | foreign key `certd_revocations → certd_serials` |
//! | audit events are one total order | primary key of `certd_audit (id)`, ids from the one-row `certd_audit_head` |
//! | a listed summary agrees with its certificate's record | trigger `certd_summary_follows_record` clears a `summary` whose `record` changed without it |
//!
//! Names are `COLLATE "C"`, so they sort bytewise as in sled and listings page by keyset
//! (`certname > $after ORDER BY certname LIMIT n`), never OFFSET. The due-time index of
//! orders is a partial index on `certd_requests (env, free_at, certname)`; an
//! environment's events (`GET /{env}/events`) are read by an index on
//! `certd_audit (env, id)` (schema 5), so a quiet environment's listing costs its own
//! events, not the whole log. Building it locks the log's writers out for as long as
//! it takes on a large table (migrations run without the statement timeout, and wait
//! for locks); it is `IF NOT EXISTS`, so a DBA may first build it `CONCURRENTLY` under
//! that name while the nodes write. Its cost at issuance was not measurable: ECDSA, 8
//! agents, three alternating pairs, 2,451/s median before and 2,399/s after, the
//! pairs +3%, +4% and −7% on the day's noise. sled has no such index: its listing of a
//! quiet environment reads the log, 17 ms over 18,000 events (5 ms with the index
//! tried: about 0.7 µs an event); the index tried (a key per event in the `audit`
//! tree, the same transaction) cost sled's issuance 4% (3,231/s median before,
//! 3,098/s after, pairs −7%, −1%, −4%), and as a tree of each environment 3–14%. On
//! one box, where a 1,000,000-event log would make such a listing ~0.7 s for an
//! environment's admin, that was not worth a twenty-fifth of every issuance; the
//! PostgreSQL store, where logs grow with several nodes, has it. Records are the
//! same JSON as sled's (`src/store/records.rs`; a certificate's less its fingerprints,
//! below); a certificate's DER is a column of its
//! own, so listings never read it, and so is its summary as bytes (`summary`, schema 4,
//! `src/store/summary.rs`), which is what listings read: a row without one (written
//! before schema 4, or by something that changed its record alone) is listed from its
//! record and DER. A certificate's summary holds its fingerprints, so its record leaves them
//! out (`ops::cert_columns`), and every read puts them back: from the summary, or,
//! for a row without one, computed from the DER read with it (`ops::with_fingerprints`;
//! a revocation reads the DER of such a row, and writes its summary again). So this
//! store returns a certificate's fingerprints as given, and computed from its DER for
//! a record stored without them (sled returns those without: the model test allows
//! for it). An older certd reads a record without fingerprints as one from before they
//! were stored, and its revocation clears the row's summary (it has neither the
//! fingerprints nor the DER at hand): until certd writes the row again, it is listed
//! from its record and DER, one more read and three hashes in each listing.
//!
//! ## Transactions
//!
//! Each state change is one transaction, answered after its commit has reached the WAL
//! on disk: certd's sessions pin `synchronous_commit` on, whatever the server, the
//! database or the role defaults to (`off` would acknowledge writes a crash of the
//! database could undo; `on` also waits for any synchronous standby). Every writing transaction first locks the one row of
//! `certd_audit_head`: writers take turns, each of READ COMMITTED's statements sees what
//! the writer before committed, so an operation decides exactly as the model does on its
//! maps, and audit ids are gapless in commit order, across any number of certd processes
//! on the database. The cost is one writer at a time; autosigned submissions, the bulk of
//! the writes, are batched by a committer thread into one transaction (up to 256), as the
//! sled committer shares one flush among them. A transaction that meets a serialization
//! failure, a deadlock or a unique violation (another writer won a race) is run again, up
//! to 5 times.
//!
//! ## Connections
//!
//! The sync `postgres` client drives each connection with a runtime of its own and may
//! not be called from inside another runtime (an actix worker is one). So each connection
//! lives on a thread of its own (a lane, `src/store/pg/lanes.rs`): a call hands its work
//! to a free lane and waits on a plain channel, from any thread. `pool_size` connections
//! are held: one for the committer, the rest for lanes; and two more, the watch
//! connection and the fence's (`readers.rs`). Each connection sets
//! `statement_timeout` and `lock_timeout` to `[store] statement_timeout`, and
//! `idle_in_transaction_session_timeout` to half of it (so that a session left inside a
//! transaction by a node cut off from the database mid-batch, holding the writers'
//! lock, is ended before the other nodes' writers waiting on that lock give up and
//! answer 503; the snapshot and the import lift it while they take tables in), and TCP
//! keepalives and `tcp_user_timeout`, so that a database that vanished is noticed. A call waits at most `statement_timeout` for a
//! lane to take its work; work no lane has started by then is dropped and the caller
//! told 503, while work already started is waited for (its statements are bounded by
//! the server's timeouts): so a 503 from a call means nothing of it was done, never
//! "done after all". A writing transaction whose `BEGIN` or lock fails is rolled back
//! at once, so its connection is not left inside an aborted transaction. The committer
//! gives a batch at most `statement_timeout`; one that takes longer is abandoned with
//! its connection (the server rolls it back) and its waiters told 503. `/status` checks
//! the database on the blocking pool, not on an HTTP worker. The password is read once
//! (from `password_file`, which must be 0600, or `CERTD_PG_PASSWORD`, then removed from
//! the environment so that programs certd starts do not inherit it).
//!
//! ## Faults
//!
//! - Unreachable at start, a wrong password, a newer schema, no privileges: certd exits
//!   with one line naming host, port, database and user, never the password (a password
//!   in `url` is refused when the configuration is read).
//! - Lost while serving: a connection error, or SQLSTATE class 08 (connection), 57
//!   (shutdown, statement timeout), 53 (resources), 25 (a read-only standby), 40
//!   (collisions left after the retries) or 55P03 (lock timeout), is
//!   `StoreError::Unavailable`: writes answer 503 `store-unavailable` with
//!   `Retry-After` (plain text on the Puppet face; the CA keys' rows too, as when an
//!   environment is created: `postgres::the_ca_key_vault_out_of_reach_answers_503`),
//!   `/status` shows the store not ok, and
//!   reads certd holds in memory (the CA chain, the CRL) go on answering. A lane whose
//!   connection broke opens a new one for its next job, so certd reconnects by itself.
//!   Measured (`a_database_restart_under_load_…`): 8 agents issuing, the database
//!   stopped at once and started again: 410 answered 201, 479 answered 503, none 500,
//!   the first 201 came 40 ms after the database was back, nothing acknowledged lost.
//! - A connection dropped mid-transaction: PostgreSQL rolls the transaction back;
//!   nothing half-written, and the caller was not told it happened.
//! - certd killed: `crash.rs` runs its SIGKILL test on PostgreSQL too (12 kills under
//!   load): every acknowledged issuance and revocation is there, no serial twice, the
//!   audit log gapless.
//!
//! ## CA keys
//!
//! With this backend every CA private key (the root, each environment's issuing CA,
//! those of environments created through the API included) is a row of `certd_ca_keys`,
//! never a file: AES-256-GCM under a 32-byte key-encryption key from `[store] key_file`
//! (the data directory's `store.key` by default), a fresh nonce per key, and
//! `certd CA key v1 \0 environment \0 purpose` as associated data, so that a row copied
//! into another's place does not decrypt. The key file never enters the database; it is
//! written (0600; created beside it and linked into place, never over an existing
//! one, so two nodes starting together with one key file agree) when the database holds
//! no key yet, and certd refuses to start when it
//! is missing, readable by others, not 32 bytes, or does not decrypt the keys (each
//! message names the file). A key is never replaced: a data directory set up anew
//! against a database that already holds a root key is refused rather than given a
//! second root. An environment's creation cut off after its issuing key was stored
//! (the database lost, the node killed, before the environment was recorded) is taken
//! up where it stopped, by the next `PUT /environments/{env}` or the next start of a
//! node that declares it: the key the database holds, with the chain shared for it
//! when that was done, or else a new certificate for that key from the root
//! (`postgres::an_environment_whose_creation_was_cut_off_is_created_again`). A creation
//! still under way on another node looks the same: both nodes may certify the key, and
//! the chain shared first is the installation's, which each node then takes
//! (`DataDir::follow_shared_chain`). No key is
//! taken up from anywhere else: rows are sealed under the key file and bound to their
//! environment, and environments are never deleted. The TLS server
//! and admin identities stay files of the data directory: they are the node's, not the
//! CA's.
//!
//! ## Reads off the HTTP workers, and the certificate cache
//!
//! With sled, a certificate probe and the checks of an autosigned submission read the
//! store on the HTTP worker thread (microseconds from sled's cache). A PostgreSQL read is
//! a round trip, which would hold the worker; the store says so
//! ([`Store::local_reads`](crate::store::Store::local_reads)), and those reads go to the
//! blocking pool instead. An autosigned submission that needs no read (below, under
//! Performance: a name the policy signs by its name, not in the certificate cache) is
//! checked and signed on the worker as on sled, and its commit awaited there without
//! holding a thread; found not new, it is made again on the blocking pool, reading
//! first (never made unread again: `/metrics` counts each signature discarded).
//!
//! `GET`/`HEAD certificate/{name}` (both faces) first asks
//! [`Store::certificate_now`](crate::store::Store::certificate_now): the PostgreSQL store
//! answers it from a certificate cache (`src/store/pg/cache.rs`, at most 8 MiB, filled
//! by reads and by the certificates an autosigned batch stored, entries dropped at random
//! when full) on the worker thread, and only a miss goes to the database. So a probe costs what it costs on sled, and certificates read
//! before the database went away keep being served while it is away, within the lease
//! below (one never read is 503); the CA chain and the CRL are held in memory anyway.
//!
//! The cache is right for this process's own writes because each write that changes a
//! certificate (issue, an autosigned batch, renew, revoke, clean, bulk clean, import)
//! drops the names it touched once its transaction has ended, on the connection's
//! thread (an import: on its caller's, everything), before its caller hears; a read that missed fills the cache only if no such
//! drop happened while it read (a generation count), so a row read before a commit
//! never lands after it; an autosigned batch keeps the certificates it stored only if no
//! other write ended while it ran (one that committed after it, a revocation of the same
//! name, may already have dropped the name); and a write whose outcome is unknown (the
//! connection broke, so it may still commit on the server) stops fills for three
//! statement timeouts, for every read begun before they are over. A write the server
//! refused rolled back: it only drops its names.
//! `tests/suite/store_model.rs` reads every certificate after every operation, against
//! the model.
//!
//! Other processes write the database too (other nodes): their writes reach this cache
//! by read leases and a fence (`src/store/pg/readers.rs`). A store serves from its cache
//! only while it holds a lease, a row of `certd_readers` with an expiry by the
//! database's clock (2 s while other readers are seen, 30 s alone), the audit id up to
//! which it has followed the others, and the backend of its watch connection. Its watch
//! thread follows the audit log (woken by notifications, at least every 100 ms): each
//! issued, renewed, revoked or cleaned certificate leaves the cache (its own batches'
//! events are passed over: what they stored is current), then it reports the id reached
//! and renews the lease (every 250 ms, and at once after a notification; without
//! waiting for the WAL's flush: a renewal lost in a crash only shortens the lease).
//!
//! A write that changes a certificate row another node may hold (a revocation, a
//! renewal, a clean, an issue in place of a revoked certificate) makes its last audit id
//! the name's fence (a row of `certd_cert_fences`, and the audit head's `fenced`, the
//! last of all), notifies at its commit, and waits before its caller hears until every
//! other live reader has reported that id: one thread per store asks for all the
//! writers waiting, every 2 ms while any is. Every write that looks at a name's
//! certificate row waits the same way for the name's fence, read under the writers'
//! lock, and so does a read of a certificate (or of whether a name has one) from the
//! database; a listing of certificates waits for the last fence of all, and a page of
//! events (the change feed, webhooks, the events resource) for the fenced events in it
//! (marked in the log). Waits happen on the caller's thread, a batch's on a thread of
//! its own while the next batch commits: no connection waits. The outcome may
//! rest on that change (a revocation found done, a name found free), and no node may
//! answer from its cache what was already answered changed. All usually at once, the
//! fence having seen the id applied; names no change touched wait for nothing. A reader
//! counts while its lease runs and its watch backend lives: a killed node holds nobody
//! back (counting a crashed lone node's lease until it ended made a `certd store copy`
//! or a node started elsewhere wait 30 s, found by the SIGKILL test). A server's lease
//! is named by its host, port and data directory, so a restarted server takes it back
//! at once.
//! Waiting longer than the statement timeout answers 503: a change is then stored but not
//! acknowledged. A reader whose lease ran out serves nothing, and starts empty under its
//! next lease. A node stopped cleanly deletes its row; leases ended an hour ago are
//! deleted by the next store to start.
//!
//! What this costs when a node cannot be reached: beside others (2 s leases), a node cut
//! off from the database (its backend still alive) holds back the others' writes and
//! reads on names changed meanwhile for up to 2 s; one that was alone (30 s) and is cut
//! off holds them back for up to 30 s once another node has come (503 after the
//! statement timeout, the change stored). When its connection is lost, a node that saw
//! others stops serving its cache at once; one alone serves out its lease, so that the
//! certificates it holds keep being served while the database is away. The gap this
//! leaves: a node that comes while a lone node's connection is broken (its backend gone,
//! so not waited for) may have a change acknowledged that the lone node does not see
//! until it is connected again and has followed (at most the rest of its lease).
//!
//! ## Copies and backups
//!
//! `certd store copy` (`src/cli/store_copy.rs`) reads one consistent snapshot of the
//! source ([`Store::snapshot`](crate::store::Store::snapshot): on PostgreSQL one
//! repeatable-read transaction, so it runs while certd issues), writes it into an empty
//! target as it is ([`Store::import`](crate::store::Store::import): audit ids, serials
//! of cleaned certificates and revocations included), moves each CA key through the
//! target's vault or files, copies the data directory's other files (`ca/root.pem`, the
//! mark of a set-up directory, last), makes the target private (directories 0700, the
//! store's files 0600: it may have existed, made by hand, with others' access), then
//! reads the target back and compares. A target that is set up or not empty is refused. A sled source must be stopped (sled allows
//! one process).
//!
//! A running server is backed up through itself: `POST /backups` (global admins; the
//! resource exists when `[store] backup_dir` is set) runs the same copy
//! ([`copy_installation`](crate::app::copy_installation), `src/app/backup.rs`) from the
//! server's own store and data directory into a new sled data directory there, named
//! `NAME.partial` until it is complete and checked, then renamed. Nothing of the request
//! names the place. The CA keys stay on the host: a backup that streamed them over
//! HTTP would serve private keys, which certd never does. sled has no consistent read
//! of several trees, so a snapshot holds a lock every sled write takes shared
//! (`Core::writers`): writes wait while it reads. `tests/suite/backup.rs` takes one
//! while 8 agents issue; without that lock its snapshot held certificates whose events
//! were not in its audit log (3 runs of 3).
//!
//! What a copy answers, byte for byte (`tests/suite/postgres.rs`, an RSA CA so that
//! signatures are deterministic): statuses, request listings, chains, CRLs, events,
//! environments, certificates, fingerprints. One thing differs between a server that
//! has run and one just started, on any store: a running server appends revocations to
//! its CRL in the order they came, a start lists them in serial order. The comparison
//! is between two started servers.
//!
//! ## Performance
//!
//! Issuance is bound by CPU on the two cores certd, PostgreSQL and the load generator
//! share: per certificate (ECDSA, 8 agents, one run) certd spends 557 µs (366 µs on
//! sled: the thread hops to a connection and its runtime), PostgreSQL 356 µs, the load
//! generator ~140 µs: ~1 ms per certificate over two cores, ~2,000/s. What got it there
//! from 827/s: batches (one read and one write statement for the whole batch, not ~10
//! statements per submission), pipelining (two round trips per batch), cached generic
//! plans of primary-key statements (per-execution planning was 43% of PostgreSQL's CPU;
//! a generic plan of `= ANY($2)` cached while the tables were empty scanned the whole
//! environment), and one pre-read per submission instead of two. Then 2,500–2,700/s:
//! the agent's GET after its PUT is answered from the cache the batch filled (it was a
//! round trip and a query per certificate: 1,984 → 2,561/s), and the committer waits up
//! to 1 ms for as many submissions as its last batch had (fewer, larger transactions).
//! Then the pre-read went for a name the policy signs by its name (`true`, globs): such
//! a submission is signed and stored unread, as for a new name ([`SubmitRule::new_only`]);
//! the store writes nothing if the name has a request or a certificate, and
//! [`App::submit_as`](crate::app::App) submits it again after the read. A name that is
//! not new costs one signature more. Measured, PostgreSQL and sled in one invocation,
//! medians of 3: 2,245–2,358/s (0.59–0.62× sled) with the read, 2,473–2,933/s
//! (0.71–0.74×, 5 invocations) without; RSA-4096, new connection per agent, 0.77–0.80× →
//! 0.85–0.87× on the same (slower) day.
//!
//! That unread submission still ran on the blocking pool: a hop there and back, and up
//! to one signing thread per agent. Measured with `perf record -a` during RSA-4096 runs
//! (new connection per agent, 8 agents; per certificate, in samples at 499 Hz over both
//! cores): certd's own CPU was the same on both stores (1.23 and 1.21), but the
//! machine sat idle 0.13 on PostgreSQL against 0.03 on sled, and PostgreSQL took 0.15.
//! With `synchronous_commit` off the ratio stayed 0.82×: not the disk (an `fdatasync`
//! here takes 0.1 ms) but the hops, on two cores already full. Started on the worker,
//! awaited there as on sled, it measured (the new and the old binary against sled in
//! one invocation, medians of 3; a later target measured 0.02–0.04 better, so both
//! orders were run, and `certd bench` now starts each run with the next target): RSA-4096 0.89–0.92× sled in 5 invocations (the old 0.82–0.90×),
//! ECDSA with keep-alive 3,048–3,158/s, 0.79–0.82× in 3 (the old 2,610–2,779/s,
//! 0.68–0.75×). Against sled alone, both orders: RSA-4096 0.84–0.91× (median 0.88×, 9
//! invocations), ECDSA 3,200–3,356/s (0.82–0.87×, 4). What is left of the RSA gap is
//! PostgreSQL's CPU: 0.21 samples per certificate to sled's 0.00, idle cores now alike
//! (2.8% and 4.2%); most of it in the kernel (a loopback round trip per statement, the
//! WAL flush) for batches of 1.6 certificates on average. A GET alone was a round trip
//! through a connection thread; the cache brought it from 0.25× sled to 1.0–1.25×.
//!
//! Two things PostgreSQL did for every batch that it need not, found with
//! `pg_stat_statements` over runs of 2,000–3,000 RSA-4096 certificates. A certificate
//! row of an RSA-4096 CA (2,084 bytes) is past the 2 KB at which PostgreSQL compresses a
//! row and moves its widest value to the table's TOAST relation: each insert wrote two
//! rows and two index entries. Kept whole up to a page (`toast_tuple_target`, also for
//! requests, which pass 2 KB with a few alternative names), the certificates' insert
//! took 51 µs a statement instead of 97, and the WAL fell from 16.4 to 12.2 records
//! (3,635 to 2,970 bytes) a certificate. It is a storage setting, not a migration:
//! certd sets it at start where it owns the tables, `certd store schema` prints it for
//! a DBA, and a certd of the same schema without it reads the tables as before. The
//! price: the table of an RSA-4096 CA is some three times larger, so a listing, which
//! reads no DER, reads that many more pages (not measured since with an RSA-4096 CA;
//! an ECDSA CA's rows, ~1 KB, were never moved out), and a revocation rewrites the
//! whole row. And the audit append, a data-modifying CTE, was
//! planned anew at every batch (1,188 plans in 1,186 calls, 53 µs each, more than it
//! took to run), while the batch held the writers' lock: the committer's connection
//! takes generic plans only (`plan_cache_mode`), and it is planned once per
//! connection. RSA-4096 against sled, same invocation, medians of 3: **0.85–0.95×,
//! median 0.91×, in 14 invocations** (PostgreSQL 505–616/s, sled 540–670/s), and
//! 0.90–0.95× in 4 more with the previous binary as a third target (which measured
//! 0.86–0.94× there); 14 of the 18 at 0.9× or more. With 15 alternating runs per
//! target in each invocation, the medians are 0.93, 0.90 and 0.90× (PostgreSQL 578–602/s
//! against 642–653/s), and 0.91, 0.91 and 0.92× with `pg_stat_statements` loaded: met in
//! each of six, narrowly. What is left is PostgreSQL's own CPU: `perf` over whole runs
//! puts certd's CPU per certificate the same on both stores (2.5 ms), and the committer's
//! backend at ~0.3 ms a certificate, most of it in the kernel (the loopback round trips'
//! wake-ups, the WAL flush), for batches of 1.5 certificates. Over three nodes the
//! shorter turns on the lock show (`manual::cluster`).
//!
//! A listing of 100,000 statuses reads 40 chunks of 2,500 certificates
//! (`[limits] stream_page`; it was `max_page`'s 1,000), one query each
//! (keyset: `certname > $2`; the empty name before the first page, so that the cached
//! generic plan keeps the bound in the index scan: `$2 IS NULL OR certname > $2` made
//! it a filter, and the last page read every row, 86 ms). Rows are decoded as they
//! arrive (`query_raw`), straight into summaries, and the next page is read on the
//! blocking pool while one is encoded (a thread of its own made both stores slower on
//! two cores; a task that also encoded ahead of the response's asking, through a
//! channel, measured the same as this). A certificate's status is written straight
//! from its summary (`PuppetStatus::Certificate`), its fingerprints held as bytes
//! ([`DigestValue`](crate::ca::DigestValue)) and written as hex pairs from a table.
//!
//! What a listing costs is certd's CPU: the wall time follows it while PostgreSQL and
//! the client share the other core. With the records' JSON (~600 bytes each, half of
//! it the fingerprints' hex) `perf` put a quarter to a third of certd's CPU in serde
//! decoding them, and more in checking and copying their text; reading the `summary`
//! column instead (schema 4: ~200 bytes, decoded with a bounds check and a copy per
//! field) brought certd's CPU per listing from 418–424 ms to 220–265 ms, and the p50
//! from 444–459 ms to 273–340 ms (one binary, alternating between a database and its
//! copy with every summary cleared; 10 listings after 2 each, three times). The table
//! of hex pairs, and dates filled in place, took another 5–10% off (233–246 ms against
//! 245–283 ms). What is left: TLS (AES-GCM and its copies, ~20%), actix copying each
//! chunk into its write buffer, writing hex and dates, validating the stored names.
//! The price is on the write side: the summary makes a certificate's row and its
//! insert's WAL record ~200 bytes larger. ECDSA issuance read 2,425–2,577/s against
//! 2,576–2,612/s without it (alternating invocations, sled 3,174–3,348/s in each), and
//! alone on the database 2,216–2,409/s against 2,243–2,533/s (4 each, alternating):
//! some 5% fewer. So the record now leaves its fingerprints to the summary (above):
//! the record went from 604 to 208 bytes, a row from 1,382 to 986, the table and its
//! index with 9,000 certificates from 15 MB to 9.9 MB, and the WAL from 1,880–2,184
//! bytes a certificate to 1,549–1,819 (4 alternating pairs, a new database each);
//! issuance moved within the machine's drift (−2% to +4%, 2,331–2,499/s against
//! 2,250–2,481/s), and beside sled, alternating invocations later in the day, 2,713 and
//! 2,784/s (0.79, 0.81×) against 2,456 and 2,593/s (0.74, 0.77×). A single record's
//! read takes its summary too, not a hash of the DER. 100,000 statuses listed in 252 ms p50 afterwards (sled 379 ms, one invocation).
//!
//! What is left of issuance against sled is the committer's turn, not CPU: certd's own
//! CPU per certificate is lower on PostgreSQL than on sled (391–404 µs against
//! 432–436, from `/proc` over 9,000 certificates each, one invocation), and `perf -a`
//! finds both cores idle a quarter of the time. A turn takes 1.3 ms for a batch of
//! 5.4: PostgreSQL's CPU for it (~0.47 ms, 86 µs a certificate), the WAL flush (0.09
//! ms by `pg_test_fsync` on an idle machine, ~0.45 ms under this load: below), the
//! committer's ~0.25 ms (mostly switching threads), and the rest waiting for a core the
//! signing workers hold. With `synchronous_commit` off
//! the ratio to sled went from 0.77× to 0.87–0.88×; PostgreSQL at nice −10 gave 1–6%.
//! The turn timed in its parts, on a later and slower day (PostgreSQL alone, 8
//! agents, batches of 4.5–4.8, turns of 1.6–1.9 ms): the first flush (`BEGIN`, the
//! lock, the lookups) 555–612 µs, deciding 12–15 µs, the second (the writes and
//! `COMMIT`) 1,164–1,206 µs, of which the commit's WAL flush is ~450 µs (758 µs with
//! `synchronous_commit` off: under load an `fdatasync` here takes some five times what
//! `pg_test_fsync` measures on an idle machine). With one agent, batches of one, the
//! two flushes take 285 and 829 µs. PostgreSQL and the committer's thread both at nice
//! −15 left turn and rate where they were (333–348 µs of turn a certificate against
//! 352–417, 1,891–1,950/s against 1,820–2,110/s). Over a Unix socket instead of
//! loopback TCP (`host=/path/to/socket/dir`): 0.77 and 0.81× sled against 0.77 and
//! 0.77× (2 alternating invocations, medians of 3 runs).
//! What the statements cost, per certificate (`pg_stat_statements`, 9,000 certificates
//! into tables already holding 3,000): the certificate's insert 27 µs and 1,655 WAL
//! bytes (its foreign-key check included), the audit append 12–13 µs and 374 bytes
//! (two events), the lookup 10–11 µs, the serial's insert 9–10 µs and 362 bytes, the
//! lock 2.3 µs; `BEGIN` and `COMMIT` under 1 µs a batch (the flush is not counted). The
//! followers' polls of the audit log add ~6 µs.
//! Four ways to shorten the turn were tried and not kept (ECDSA CA, 8 keep-alive
//! agents, PostgreSQL alone, alternating with the binary without them, medians of 3):
//!
//! - The next batch opened behind the `COMMIT`, on the same connection and in the same
//!   flush, so that its round trip overlaps the commit: it took what had queued by
//!   then, batches halved (0.33 transactions a certificate against 0.19) and issuance
//!   fell 7% (2,097–2,196/s against 2,288–2,374/s). Opened only when as many waited as
//!   the batch before had, batches kept their size and nothing moved: 0.73–0.75× sled
//!   against 0.68–0.76× (3 invocations each, sled in each).
//! - A batch of new names decided by the server in the statement that writes it (one
//!   flush: `BEGIN`, the lock, one statement of data-modifying CTEs, `COMMIT`): the
//!   round trip went, but the statement took longer than the lookups and inserts it
//!   replaced (1,434 µs a batch of 5.6 against 1,301 µs a batch of 5.4), 4–6% fewer;
//!   with the wide columns taken by position instead of carried through the CTEs,
//!   2–9% fewer (5 alternating pairs). `pg_stat_statements` put the first at 110 µs
//!   a certificate against 62 for the lookups and inserts it replaced.
//! - Two committers on one queue, taking turns on the lock: batches halved, 8–9% fewer
//!   (2,158–2,369/s against 2,377–2,585/s).
//! - The whole batch in one flush when every submission in it is for a name believed
//!   new (the fast path's): decided as if nothing were stored, with a guard per
//!   submission in place of its lookup (the same three primary-key probes, failing
//!   its statement, so the transaction, when the name has a request or a certificate
//!   or the serial is taken; the batch then runs again in two flushes): `BEGIN`, the
//!   lock, the guards, the writes and `COMMIT` in one flush. Turns of 1,229–1,469 µs
//!   for batches of 4.9–5.7, against 1,319–1,417 µs for 5.5, and 2,287–2,642/s against
//!   2,430–2,543/s (4 alternating pairs, medians of 3 runs); over three nodes 0.77,
//!   0.77 and 0.88× one node against 0.76, 0.81 and 0.85× (3 pairs, medians of 9).
//!
//! Two of these trade larger batches for an earlier start, and on two shared cores the
//! larger batch wins; the third and the fourth show that the turn does not wait on its
//! round trips.
//! A database on cores of its own would take away the wait for a core (not measured:
//! this is one machine).
//!
//! ## Not yet
//!
//! While the database is down, a certificate this node never issued or read answers
//! 503, and one it holds is served for the rest of its lease (30 s alone, none beside
//! other nodes) and then 503.
//!
//! A database that goes back in time under running nodes (a failover that lost commits,
//! a restore): each cache is emptied when its follower sees the log's head go back, but
//! the fences remember what they saw followed. Restart the nodes after such a change.
//!
//! [`PgStore`]: crate::store::PgStore
//! [`SubmitRule::new_only`]: crate::store::SubmitRule::new_only
