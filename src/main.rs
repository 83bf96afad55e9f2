//! The `tagbridge` binary: everything lives in the library; see `tagbridge::cli`.

/// mimalloc: the request path allocates many small JSON values across tokio workers and the
/// queue writer; glibc's arenas spent ~30% of CPU there under load (see README, benchmarks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Freed memory goes back to the OS at once instead of after mimalloc's default delay
    // (10 ms, ×10 for arenas). Start-up on a large backlog frees its read buffers and index
    // chunks faster than that delay, and the peak RSS counted them all (300,000 queued
    // events: ~68 MiB with the delay, ~41 MiB without; no measurable throughput cost).
    // SAFETY: sets one process-wide allocator option (a plain integer store inside mimalloc)
    // before any thread is spawned; `mi_option_purge_delay` is option 15 of the bundled
    // mimalloc's `mi_option_t` (mimalloc.h), which the sys crate does not name.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
    tagbridge::cli::main()
}

const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
