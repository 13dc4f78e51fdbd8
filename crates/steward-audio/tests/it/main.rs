//! Integration tests for steward-audio: conversions, real streams on the
//! PulseAudio null devices, allocation-free callbacks, leak-free cleanup.
//!
//! The binary installs a counting global allocator: it counts allocations
//! made on threads inside one of our audio callbacks (a thread-local flag
//! set and cleared by the crate's callback hook).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

mod alloc;
mod common;
mod convert;
mod leaks;
mod loss;
mod position;
mod shed;
mod streams;

thread_local! {
    /// What this thread is doing: 0 nothing, 1 inside an audio callback,
    /// 2 inside the allocator's own self-test.
    static MODE: Cell<u8> = const { Cell::new(0) };
}

/// Allocations (and reallocations) made inside audio callbacks.
static CALLBACK_ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Allocations made during the self-test (proves the counting works).
static SELF_TEST_ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Callbacks observed through the hook.
static CALLBACKS_SEEN: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated through the global allocator and not yet freed, all
/// threads: a leak on the Rust heap shows here exactly, without the page
/// granularity and arena caching that blur the resident set size.
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

/// Bytes currently allocated through the global allocator.
pub(crate) fn live_heap_bytes() -> i64 {
    LIVE_BYTES.load(Relaxed)
}

fn note_size(delta: usize, grow: bool) {
    let delta = i64::try_from(delta).unwrap_or(i64::MAX);
    if grow {
        LIVE_BYTES.fetch_add(delta, Relaxed);
    } else {
        LIVE_BYTES.fetch_sub(delta, Relaxed);
    }
}

struct CountingAlloc;

fn note_alloc() {
    // `try_with`: never panic inside the allocator, even during thread teardown.
    match MODE.try_with(Cell::get).unwrap_or(0) {
        1 => CALLBACK_ALLOCS.fetch_add(1, Relaxed),
        2 => SELF_TEST_ALLOCS.fetch_add(1, Relaxed),
        _ => 0,
    };
}

// SAFETY: every method forwards to `System` unchanged; the only addition is
// an atomic counter bump, which neither allocates nor touches the memory.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_size(layout.size(), true);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note_size(layout.size(), true);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_alloc();
        note_size(layout.size(), false);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note_size(layout.size(), false);
            note_size(new_size, true);
        }
        p
    }
}

#[allow(unsafe_code)]
#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn enter_callback() {
    CALLBACKS_SEEN.fetch_add(1, Relaxed);
    let _ = MODE.try_with(|c| c.set(1));
}

fn exit_callback() {
    let _ = MODE.try_with(|c| c.set(0));
}

/// Installs the hooks (idempotent across tests of this binary).
pub(crate) fn install_hooks() {
    let _ = steward_audio::callback_hook::install(steward_audio::callback_hook::Hooks {
        enter: enter_callback,
        exit: exit_callback,
    });
}

/// Runs `f` with this thread marked like a callback, counting separately.
pub(crate) fn count_allocs_in_self_test(f: impl FnOnce()) -> u64 {
    let before = SELF_TEST_ALLOCS.load(Relaxed);
    let _ = MODE.try_with(|c| c.set(2));
    f();
    let _ = MODE.try_with(|c| c.set(0));
    SELF_TEST_ALLOCS.load(Relaxed) - before
}
