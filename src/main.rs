//! The `flashgate` binary: build the runtime and hand over to [`flashgate::cli`].
//!
//! `FLASHGATE_THREADS` sets the number of runtime worker threads (default: one per core). On a
//! small box shared with Redis and a load generator, fewer threads than cores can serve more.

/// mimalloc: the buy path allocates many small short-lived buffers, and glibc's malloc showed up
/// at ~9% of the edge's CPU in a perf profile of the buy benchmark. Built without transparent
/// huge pages (`no_thp`): with them, each fresh page mimalloc took zeroed 2 MiB in the kernel,
/// ~25% of a worker's CPU while its relay delivered events (perf); without, the relay's CPU per
/// event halved and the edge's buy path was unchanged (loadtest/README.md §14).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = std::env::var("FLASHGATE_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        builder.worker_threads(n);
    }
    builder.build()?.block_on(flashgate::cli::main())
}
