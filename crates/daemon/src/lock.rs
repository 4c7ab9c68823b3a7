//! The daemon's one lock policy.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The daemon's one lock policy: a `std::sync::Mutex` guards plain maps that every critical
/// section leaves consistent, and nothing in one awaits; if a bug panicked while holding one,
/// the next caller takes it over rather than every later request failing.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
