/// mimalloc instead of glibc's malloc: listings and issuance allocate many small,
/// short-lived objects on several threads, where glibc's arenas spent a third of a
/// 100,000-certificate listing in `_int_malloc`/`malloc_consolidate` and kept the
/// memory afterwards (`manual::performance`; the figures are in the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often [`purge_freed_memory`] frees its block.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// mimalloc gives memory that large blocks (over 512 KiB: a 100,000-entry CRL, its PEM,
/// a response's write buffer) leave free back to the system only when a later block is
/// freed at least its purge delay (1 s) after. A server that falls idle after a burst
/// frees nothing more, so what the burst freed stays resident: 112 MB after eight
/// downloads at once of a 100,000-entry CRL, of which 58 MB is in use. Freeing one such
/// block (its pages barely written, so barely resident) every few seconds lets the purge
/// run. This is how mimalloc v3 behaves, the version Cargo.lock holds; the call that
/// would run the purge directly (`mi_collect`) is only reachable through `unsafe`.
fn purge_freed_memory() {
    loop {
        std::thread::sleep(PURGE_EVERY);
        drop(std::hint::black_box(Vec::<u8>::with_capacity(1 << 20)));
    }
}

fn main() -> std::process::ExitCode {
    // Best effort: without the thread, memory is only given back later.
    let _ = std::thread::Builder::new()
        .name("certd-purge".into())
        .spawn(purge_freed_memory);
    certd::cli::main()
}
