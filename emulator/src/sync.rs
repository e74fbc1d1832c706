//! A poison-tolerant lock.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data even if a thread panicked while holding it: every piece of
/// shared state here is consistent between statements (handlers validate before they
/// mutate), so serving on beats failing every later request.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
