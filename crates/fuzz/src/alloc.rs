//! A counting global allocator for the driver binary: with a limit set, an
//! allocation that would take the live heap past it does not happen; the
//! input being run is saved instead, a line says where, and the process
//! exits with [`EXIT_OOM`] (an input that makes a parser allocate without
//! bound is a failure, like a hang, not a reason to take the machine down).
//!
//! Nothing on the out-of-memory path allocates: the input and the path it is
//! saved to were copied beforehand into buffers this module owns, and the
//! file is written with plain `open`/`write` calls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The exit status after an input went over the memory limit.
pub const EXIT_OOM: i32 = 71;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// 0: no limit.
static LIMIT: AtomicUsize = AtomicUsize::new(0);
static IN_OOM: AtomicBool = AtomicBool::new(false);

/// Where an out-of-memory input goes (NUL-terminated), what to print once it
/// is saved, and the input itself.
pub(crate) static OOM_PATH: Mutex<Vec<u8>> = Mutex::new(Vec::new());
pub(crate) static OOM_NOTE: Mutex<Vec<u8>> = Mutex::new(Vec::new());
pub(crate) static CURRENT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Set the limit on live heap bytes (0: none).
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// Live heap bytes now (0 when this allocator is not the global one).
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The system allocator, counting.
#[derive(Debug, Default)]
pub struct Counting;

fn write_all(fd: libc::c_int, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: `b` is a valid, initialized slice for its whole length.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

/// A number in decimal on stderr, without allocating.
fn write_number(mut n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    write_all(2, &buf[i..]);
}

#[cold]
fn out_of_memory(size: usize) -> ! {
    if !IN_OOM.swap(true, Ordering::SeqCst) {
        write_all(2, b"\npidcap-fuzz: OUT OF MEMORY: an input asked for ");
        write_number(size);
        write_all(2, b" bytes more, past the memory limit (--memory-mb) with ");
        write_number(LIVE.load(Ordering::Relaxed));
        write_all(2, b" live\n");
        if let (Ok(path), Ok(input)) = (OOM_PATH.try_lock(), CURRENT.try_lock()) {
            if path.last() == Some(&0) {
                // SAFETY: `path` is NUL-terminated (checked above) and lives for the call.
                let fd =
                    unsafe { libc::open(path.as_ptr().cast(), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644) };
                if fd >= 0 {
                    write_all(fd, &input);
                    // SAFETY: `fd` was opened above and is closed once.
                    unsafe { libc::close(fd) };
                    if let Ok(note) = OOM_NOTE.try_lock() {
                        write_all(2, &note);
                    }
                }
            }
        }
    }
    // SAFETY: `_exit` ends the process at once; nothing after it runs.
    unsafe { libc::_exit(EXIT_OOM) }
}

fn admit(size: usize) {
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit != 0 && size > limit.saturating_sub(LIVE.load(Ordering::Relaxed)) {
        out_of_memory(size);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counting never changes what
// is allocated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        admit(layout.size());
        // SAFETY: forwarded as is (see the impl's comment).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        admit(layout.size());
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            admit(new_size - layout.size());
        }
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}
