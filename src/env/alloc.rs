//! The process allocator, hardened against lying length prefixes.
//!
//! Why this exists: the Kafka codecs (kafka-protocol 0.18) reserve
//! `Vec::with_capacity(n)` for an array *before* reading its elements, with `n`
//! taken from the request. A request of a few bytes can claim 2^31 elements of
//! a 100-byte struct; the system allocator refuses the 200 GB and Rust aborts
//! the whole process, taking every other client's connection with it.
//!
//! [`GuardedAlloc`] serves allocations of at least [`HUGE_BYTES_MIN`] from an
//! anonymous `MAP_NORESERVE` mapping instead: the kernel hands out address space
//! without committing memory, so the reservation succeeds, the decoder runs out
//! of request bytes after a handful of elements and returns an error, and the
//! mapping is unmapped. Pages are only committed as they are touched, and a
//! decoder touches no more than the request's real contents. Nothing Weir does
//! legitimately allocates this much at once (frames are capped by
//! socket.request.max.bytes, 100 MiB by default).
//!
//! Everything smaller goes to the system allocator unchanged. The binary installs
//! it with `#[global_allocator]`; tests that spawn servers in process can too.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are served by a lazily-committed mapping.
pub const HUGE_BYTES_MIN: usize = 1 << 30;

const PAGE_BYTES: usize = 4096;

/// See the module documentation.
pub struct GuardedAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES_MIN && layout.align() <= PAGE_BYTES
}

unsafe fn map_huge(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no
    // preconditions; failure is reported as MAP_FAILED.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr as *mut u8
    }
}

unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: size is non-zero (it is at least HUGE_BYTES_MIN).
            unsafe { map_huge(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's valid layout.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            // SAFETY: as in `alloc`.
            unsafe { map_huge(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's valid layout.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `map_huge(layout.size())`.
            unsafe { libc::munmap(ptr as *mut libc::c_void, layout.size()) };
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: both sides belong to `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing between the two allocators (or resizing a mapping): move.
        // SAFETY: `new_layout` is valid; copying min(old, new) bytes between two
        // live, non-overlapping blocks; then the old block is released once.
        unsafe {
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new_ptr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservation_succeeds_without_committing_memory() {
        // 256 GiB of address space: more than this machine's RAM + swap, which
        // the system allocator would refuse (and Rust would abort).
        let layout = Layout::from_size_align(256 << 30, 8).unwrap();
        unsafe {
            let p = GuardedAlloc.alloc(layout);
            assert!(!p.is_null());
            // touch a few pages: only those get committed
            *p = 1;
            *p.add(100 << 30) = 2;
            assert_eq!(*p + *p.add(100 << 30), 3);
            GuardedAlloc.dealloc(p, layout);
        }
    }

    #[test]
    fn small_allocations_and_realloc_across_the_threshold() {
        let small = Layout::from_size_align(64, 8).unwrap();
        unsafe {
            let p = GuardedAlloc.alloc(small);
            p.write_bytes(7, 64);
            let q = GuardedAlloc.realloc(p, small, HUGE_BYTES_MIN);
            assert!(!q.is_null());
            assert_eq!(*q.add(63), 7);
            let big = Layout::from_size_align(HUGE_BYTES_MIN, 8).unwrap();
            let r = GuardedAlloc.realloc(q, big, 128);
            assert_eq!(*r.add(10), 7);
            GuardedAlloc.dealloc(r, Layout::from_size_align(128, 8).unwrap());
        }
    }
}
