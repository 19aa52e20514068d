//! SQLite's memory allocator: mimalloc, as for the rest of the server, instead of SQLite's
//! default (the C library's malloc behind a global statistics mutex).
//!
//! Why: the writer thread is the one thread every write goes through, and SQLite allocates
//! on it all the time (statement state, and a tree of bit vectors per savepoint, which each
//! write in a group commit has). Under callgrind a chained create made 137 SQLite
//! allocations costing ~80k instructions (glibc `_int_malloc`/`_int_free` plus the
//! statistics bookkeeping): about a sixth of the writer's work. See BENCHMARKS.md.
//!
//! Memory statistics are turned off with it: nothing here reads `sqlite3_memory_used` or sets
//! a soft heap limit, and keeping them takes a mutex on every allocation.

use std::ffi::{c_int, c_void};

use rusqlite::ffi;

/// Routes SQLite's allocations to mimalloc. Effective only before SQLite is first used in
/// the process (SQLite refuses allocator changes after it initialised); returns whether it
/// took effect. Idempotent: later calls return the first call's answer.
pub fn install() -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: sqlite3_config is documented as safe to call before sqlite3_initialize
        // from one thread; OnceLock makes this the only call. SQLITE_CONFIG_MALLOC copies the
        // struct, so a stack value is fine. After initialisation both calls return
        // SQLITE_MISUSE and change nothing.
        #[allow(unsafe_code)]
        let (alloc, stats) = unsafe {
            (ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const ffi::sqlite3_mem_methods), ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int))
        };
        alloc == ffi::SQLITE_OK && stats == ffi::SQLITE_OK
    })
}

// The functions SQLite calls. mimalloc keeps the block size itself, so no size header is
// needed (SQLite's default allocator prefixes one to every block). A non-positive size is
// never asked for by SQLite; it gets null, which SQLite treats as out of memory.

#[allow(unsafe_code)]
unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
    match usize::try_from(n) {
        // SAFETY: mi_malloc accepts any size and returns null on failure.
        Ok(n) if n > 0 => unsafe { libmimalloc_sys::mi_malloc(n) },
        _ => std::ptr::null_mut(),
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: SQLite frees only what xMalloc/xRealloc returned (or null, which mi_free
    // accepts).
    unsafe { libmimalloc_sys::mi_free(p) }
}

#[allow(unsafe_code)]
unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    match usize::try_from(n) {
        // SAFETY: p came from xMalloc/xRealloc; on failure mi_realloc returns null and
        // leaves p allocated, as SQLite expects.
        Ok(n) if n > 0 => unsafe { libmimalloc_sys::mi_realloc(p, n) },
        _ => std::ptr::null_mut(),
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn size(p: *mut c_void) -> c_int {
    // SAFETY: p came from xMalloc/xRealloc (SQLite never asks for the size of null).
    let n = unsafe { libmimalloc_sys::mi_usable_size(p) };
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

#[allow(unsafe_code)]
unsafe extern "C" fn roundup(n: c_int) -> c_int {
    let Ok(u) = usize::try_from(n) else { return n };
    // SAFETY: mi_good_size is a pure function of its argument.
    let good = unsafe { libmimalloc_sys::mi_good_size(u) };
    c_int::try_from(good).unwrap_or(n)
}

#[allow(unsafe_code)]
unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

#[allow(unsafe_code)]
unsafe extern "C" fn shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    #![allow(unsafe_code)]
    use super::*;

    #[test]
    fn the_callbacks_keep_sqlites_allocator_contract() {
        // SAFETY: each pointer is used only while allocated and within its size.
        unsafe {
            assert!(malloc(0).is_null() && malloc(-1).is_null(), "no block for a non-positive size");
            let p = malloc(100).cast::<u8>();
            assert!(!p.is_null());
            assert!(size(p.cast()) >= 100, "xSize reports at least what was asked for");
            for i in 0..100 {
                p.add(i).write(i as u8);
            }
            let q = realloc(p.cast(), 10_000).cast::<u8>();
            assert!(!q.is_null() && size(q.cast()) >= 10_000);
            assert!((0..100).all(|i| q.add(i).read() == i as u8), "realloc keeps the contents");
            free(q.cast());
            free(std::ptr::null_mut());
            assert!(roundup(100) >= 100 && roundup(1) >= 1);
        }
    }
}
