//! The `tagbridge` binary: everything lives in the library; see `tagbridge::cli`.

/// mimalloc: the request path allocates many small JSON values across tokio workers and the
/// queue writer; glibc's arenas spent ~30% of CPU there under load (see README, benchmarks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Start-up: freed memory goes back to the OS at once instead of after mimalloc's delay
    // (10 ms, ×10 for arenas). Recovering a large backlog frees its read buffers and index
    // chunks faster than that delay, and the peak RSS counted them all (300,000 queued
    // events: ~68 MiB with the delay, ~41 MiB without).
    set_purge_delay(0);
    // Serving: 1 ms. Returning every freed page at once cost ~6 % of throughput on the gtag
    // benchmark (the allocator gave pages back and faulted them in again all the time);
    // mimalloc's default 10 ms raised the peak RSS under that load from ~43 to ~72 MiB;
    // 1 ms kept both (`scripts/bench-ingest.sh`, README "Benchmarks").
    tagbridge::cli::main_with(|| set_purge_delay(SERVING_PURGE_DELAY_MS))
}

/// Sets mimalloc's purge delay, unless `MIMALLOC_PURGE_DELAY` says otherwise.
fn set_purge_delay(ms: i64) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one process-wide allocator option (an atomic integer store inside
    // mimalloc, which reads its options on use); `mi_option_purge_delay` is option 15 of
    // the bundled mimalloc's `mi_option_t` (mimalloc.h), which the sys crate does not name.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as std::ffi::c_long);
    }
}

const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc's `purge_delay` once the gateway serves (milliseconds; mimalloc's default: 10).
const SERVING_PURGE_DELAY_MS: i64 = 1;
