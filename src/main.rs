//! The `tagbridge` binary: everything lives in the library; see `tagbridge::cli`.

/// mimalloc: the request path allocates many small JSON values across tokio workers and the
/// queue writer; glibc's arenas spent ~30% of CPU there under load (see README, benchmarks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tagbridge::cli::main()
}
