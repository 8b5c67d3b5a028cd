/// mimalloc instead of glibc's malloc: listings and issuance allocate many small,
/// short-lived objects on several threads, where glibc's arenas spent a third of a
/// 100,000-certificate listing in `_int_malloc`/`malloc_consolidate` and kept the
/// memory afterwards (`manual::performance`; the figures are in the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    certd::cli::main()
}
