use clap::Parser;

// glibc malloc's slow paths were the largest host-side cost of a chained request; mimalloc
// took about 40% off the server's CPU per create (BENCHMARKS.md). SQLite gets it too, below.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    without_huge_pages();
    // Before anything opens a database: SQLite takes an allocator only before it initialises.
    // Should it ever not take effect, SQLite keeps its default one, slower but correct.
    let _ = mapwright::store::sqlite::alloc::install();
    let cli = mapwright::cli::Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        // Blocking threads (compiles, artifact loads, SQLite reads) idle for an hour, not 10 s,
        // before they exit: an exiting thread's partly used heap pages go to the next thread
        // that needs pages, the request workers, whose allocations then land in memory the
        // compiles left scattered. On a node with 10,000 plugins the workers' malloc fast path
        // took ~4x the samples per request of a small server's (BENCHMARKS.md, issue 21).
        .thread_keep_alive(std::time::Duration::from_secs(3600))
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(mapwright::cli::run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line with its causes; no Debug dump or backtrace for users.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks for them on its arenas, and
/// the first touch of each 2 MiB page zeroes it whole inside a request: while the heap grew
/// under a lone client's creates, a request in ~20 stalled 6-7 ms on the test VM, every
/// ~100 ms (BENCHMARKS.md, issue 20). With 4 KiB pages the same zeroing is spread thin;
/// throughput at c8 was the same either way. Disabled before mimalloc's arenas are first
/// touched by the program's own work; a kernel without the call keeps its default.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and changes only this
    // process's memory policy.
    #[allow(unsafe_code)]
    unsafe {
        let _ = libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_once_main_has_begun() {
        super::without_huge_pages();
        // SAFETY: a read of this process's flag.
        #[allow(unsafe_code)]
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
    }
}
