//! The encoders' output buffer: one per thread, reused across calls so an
//! encode does not pay for growing a fresh Vec from empty.

use std::cell::RefCell;

/// Buffers grown past this are cut back to it after the call.
const KEEP_BUFFER: usize = 1 << 20;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

/// Calls `f` with an empty buffer: the thread's own, or a fresh one when it
/// is taken (a `default=` hook that encodes again, re-entering).
pub fn with_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BUFFER.with(|cell| {
        let Ok(mut out) = cell.try_borrow_mut() else {
            return f(&mut Vec::with_capacity(1024));
        };
        out.clear();
        let result = f(&mut out);
        if out.capacity() > KEEP_BUFFER {
            // Cut back to KEEP_BUFFER, not to a fresh small Vec: the next large
            // output then grows once from there (in place, or by remapping
            // pages) instead of doubling up from 4 KiB through a dozen
            // copies into freshly faulted memory (canada encode, 1.1 MB).
            out.shrink_to(KEEP_BUFFER);
        }
        result
    })
}
