//! The plugins' global allocator on wasm: free lists per size class in front of talc.
//!
//! A plugin call parses JSON into many small values and frees them all before it returns,
//! and the next call does the same. Rust tells `dealloc` the layout of every block, so small
//! blocks need no header and no coalescing: a freed block goes on the free list of its size
//! class, and the next allocation of that class takes it back (a handful of instructions, and
//! memory the call touched a moment ago). Blocks above [`MAX_CLASS`] bytes or aligned above
//! 16, and the chunks the classes are carved from, come from talc.
//!
//! Measured with the load bench: talc alone spent about a quarter of the first-party plugins'
//! time per call in `allocate`/`deallocate`. The price is that memory a class once held stays
//! with that class (bounded by the instance's memory limit; an instance that reaches its limit
//! traps and is replaced).

// The second exception to the workspace's `deny(unsafe_code)` (after loading our own
// precompiled artifacts): an allocator hands out raw memory. Every block says why it holds,
// and a property test drives the same code natively.
#![allow(unsafe_code)]

use core::alloc::Layout;

/// Smallest block (and the alignment every class block has).
const MIN_CLASS: usize = 16;
/// Largest block served from a class.
pub(crate) const MAX_CLASS: usize = 4096;
/// Classes are powers of two from `MIN_CLASS` to `MAX_CLASS`.
const CLASSES: usize = (MAX_CLASS.trailing_zeros() - MIN_CLASS.trailing_zeros() + 1) as usize;
/// What the classes take from the backing allocator at a time.
const CHUNK: usize = 64 << 10;

/// Where class memory comes from (talc in a plugin, the system allocator in tests).
pub(crate) trait Backing {
    /// # Safety
    /// As [`core::alloc::GlobalAlloc::alloc`].
    unsafe fn alloc(&self, layout: Layout) -> *mut u8;
    /// # Safety
    /// As [`core::alloc::GlobalAlloc::dealloc`].
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout);
    /// # Safety
    /// As [`core::alloc::GlobalAlloc::realloc`].
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8;
}

/// The size-class state: one free list per class (threaded through the free blocks
/// themselves) and the unused rest of the current chunk.
pub(crate) struct Classes {
    free: [*mut u8; CLASSES],
    next: *mut u8,
    end: *mut u8,
}

/// The class of a layout, if a class serves it.
fn class(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_CLASS || layout.align() > MIN_CLASS {
        return None;
    }
    let size = layout.size().max(MIN_CLASS).next_power_of_two();
    Some((size.trailing_zeros() - MIN_CLASS.trailing_zeros()) as usize)
}

const fn class_size(c: usize) -> usize {
    MIN_CLASS << c
}

impl Classes {
    pub(crate) const fn new() -> Classes {
        Classes { free: [core::ptr::null_mut(); CLASSES], next: core::ptr::null_mut(), end: core::ptr::null_mut() }
    }

    /// # Safety
    /// As [`core::alloc::GlobalAlloc::alloc`]; `backing` is the same for every call.
    pub(crate) unsafe fn alloc(&mut self, layout: Layout, backing: &impl Backing) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { backing.alloc(layout) };
        };
        let head = self.free[c];
        if !head.is_null() {
            // SAFETY: a free block holds the next free block's address in its first word
            // (written by `dealloc`; every class block is at least 16 bytes, 16-aligned).
            self.free[c] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = class_size(c);
        if (self.end as usize) - (self.next as usize) < size {
            // The chunk's remainder is too small for this class: it stays unused (less than
            // one block of this class, at most 4 KiB per 64 KiB chunk).
            // SAFETY: a valid, non-zero layout.
            let chunk = unsafe { backing.alloc(Layout::from_size_align_unchecked(CHUNK, MAX_CLASS)) };
            if chunk.is_null() {
                return chunk;
            }
            self.next = chunk;
            // SAFETY: within the chunk just allocated.
            self.end = unsafe { chunk.add(CHUNK) };
        }
        let block = self.next;
        // SAFETY: `size` bytes fit before `end` (checked above); block sizes are multiples of
        // 16 and the chunk is 4096-aligned, so every block is 16-aligned.
        self.next = unsafe { block.add(size) };
        block
    }

    /// # Safety
    /// As [`core::alloc::GlobalAlloc::dealloc`]: `ptr` came from `alloc` with `layout`.
    pub(crate) unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout, backing: &impl Backing) {
        match class(layout) {
            Some(c) => {
                // SAFETY: the block is ours again and at least a word long.
                unsafe { ptr.cast::<*mut u8>().write(self.free[c]) };
                self.free[c] = ptr;
            }
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { backing.dealloc(ptr, layout) },
        }
    }

    /// # Safety
    /// As [`core::alloc::GlobalAlloc::realloc`].
    pub(crate) unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize, backing: &impl Backing) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded to `layout.align()`, fits an isize.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new)) {
            // Same class: the block already has room (a growing string doubles in place
            // until it outgrows its class).
            (Some(a), Some(b)) if a == b => ptr,
            // SAFETY: both outside the classes: talc's own realloc.
            (None, None) => unsafe { backing.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: as `alloc`/`dealloc`; the copy covers the smaller of the two sizes.
                unsafe {
                    let moved = self.alloc(new, backing);
                    if !moved.is_null() {
                        core::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout, backing);
                    }
                    moved
                }
            }
        }
    }
}

/// The global allocator of a plugin: [`Classes`] over talc. Single-threaded: a component
/// instance runs on one thread and has no threads of its own.
#[cfg(all(feature = "talc", target_family = "wasm", not(target_feature = "atomics")))]
pub(crate) mod global {
    use super::{Backing, Classes};
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;

    struct Talc(talc::wasm::WasmDynamicTalc);

    impl Backing for Talc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { self.0.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { self.0.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { self.0.realloc(ptr, layout, new_size) }
        }
    }

    pub(crate) struct PluginAlloc {
        classes: UnsafeCell<Classes>,
        backing: Talc,
    }

    // SAFETY: wasm without the atomics feature has one thread (see the cfg above).
    unsafe impl Sync for PluginAlloc {}

    impl PluginAlloc {
        pub(crate) const fn new() -> PluginAlloc {
            PluginAlloc { classes: UnsafeCell::new(Classes::new()), backing: Talc(talc::wasm::new_wasm_dynamic_allocator()) }
        }
    }

    // SAFETY: one thread, and no allocator method re-enters another (`Classes` calls only
    // the backing talc), so the `&mut Classes` below is never aliased.
    unsafe impl GlobalAlloc for PluginAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: see the impl.
            unsafe { (*self.classes.get()).alloc(layout, &self.backing) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: see the impl.
            unsafe { (*self.classes.get()).dealloc(ptr, layout, &self.backing) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: see the impl.
            unsafe { (*self.classes.get()).realloc(ptr, layout, new_size, &self.backing) }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::alloc::{GlobalAlloc, System};
    use std::collections::BTreeMap;

    struct Sys;
    impl Backing for Sys {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            unsafe { System.realloc(p, l, n) }
        }
    }

    #[test]
    fn classes_cover_sizes_and_alignments() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(class(l(1, 1)), Some(0));
        assert_eq!(class(l(16, 8)), Some(0));
        assert_eq!(class(l(17, 1)), Some(1));
        assert_eq!(class(l(4096, 16)), Some(CLASSES - 1));
        assert_eq!(class(l(4097, 1)), None);
        assert_eq!(class(l(64, 32)), None);
    }

    #[test]
    fn a_freed_block_is_the_next_of_its_class() {
        let mut c = Classes::new();
        let l = Layout::from_size_align(40, 8).unwrap();
        unsafe {
            let a = c.alloc(l, &Sys);
            let b = c.alloc(l, &Sys);
            assert_ne!(a, b);
            c.dealloc(a, l, &Sys);
            assert_eq!(c.alloc(Layout::from_size_align(33, 1).unwrap(), &Sys), a, "same class, last freed");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(usize, usize),
        Free(usize),
        Realloc(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let size = prop_oneof![1usize..64, 1usize..600, 1usize..9000];
        prop_oneof![
            (size.clone(), 0usize..6).prop_map(|(s, a)| Op::Alloc(s, 1 << a)),
            any::<usize>().prop_map(Op::Free),
            (any::<usize>(), size).prop_map(|(i, s)| Op::Realloc(i, s)),
        ]
    }

    proptest! {
        /// Any sequence of allocations, frees and reallocations: every block is aligned as
        /// asked, no two live blocks overlap, and a block keeps its bytes through realloc.
        #[test]
        fn blocks_are_aligned_disjoint_and_keep_their_bytes(ops in prop::collection::vec(op(), 1..400)) {
            let mut c = Classes::new();
            // live blocks: start -> (layout, fill byte)
            let mut live: BTreeMap<usize, (Layout, u8)> = BTreeMap::new();
            let check = |live: &BTreeMap<usize, (Layout, u8)>| {
                let mut end = 0;
                for (&start, (l, fill)) in live {
                    assert!(start >= end, "overlapping blocks");
                    end = start + l.size();
                    let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, l.size()) };
                    assert!(bytes.iter().all(|b| b == fill), "a block lost its bytes");
                }
            };
            for (n, op) in ops.into_iter().enumerate() {
                let fill = n as u8;
                match op {
                    Op::Alloc(size, align) => {
                        let l = Layout::from_size_align(size, align).unwrap();
                        let p = unsafe { c.alloc(l, &Sys) };
                        prop_assert!(!p.is_null() && (p as usize).is_multiple_of(align));
                        unsafe { p.write_bytes(fill, size) };
                        live.insert(p as usize, (l, fill));
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let k = *live.keys().nth(i % live.len()).unwrap();
                        let (l, _) = live.remove(&k).unwrap();
                        unsafe { c.dealloc(k as *mut u8, l, &Sys) };
                    }
                    Op::Realloc(i, size) if !live.is_empty() => {
                        let k = *live.keys().nth(i % live.len()).unwrap();
                        let (l, old_fill) = live.remove(&k).unwrap();
                        let p = unsafe { c.realloc(k as *mut u8, l, size, &Sys) };
                        prop_assert!(!p.is_null() && (p as usize).is_multiple_of(l.align()));
                        let kept = unsafe { std::slice::from_raw_parts(p, l.size().min(size)) };
                        prop_assert!(kept.iter().all(|b| *b == old_fill), "realloc lost bytes");
                        unsafe { p.write_bytes(fill, size) };
                        live.insert(p as usize, (Layout::from_size_align(size, l.align()).unwrap(), fill));
                    }
                    _ => {}
                }
                check(&live);
            }
            // Chunks are never returned (by design); blocks above the classes are.
            for (k, (l, _)) in live {
                unsafe { c.dealloc(k as *mut u8, l, &Sys) };
            }
        }
    }
}
