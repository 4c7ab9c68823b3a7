//! Idle keep-alive connections to one instance, for either client: hyper's (`SendRequest`) and
//! the inline one (`h1::Conn`).
//!
//! The newest connection is handed out first (it is the least likely to have been closed by
//! the instance), and one older than the idle timeout is never handed out: everything below
//! it in the stack is older still, so the whole rest is dropped at once.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A connection that can tell, cheaply, whether it can still carry a request.
pub(crate) trait Reusable {
    fn usable(&mut self) -> bool;
}

/// The idle connections of one kind to one instance.
pub(crate) struct IdlePool<C> {
    conns: Mutex<Vec<(C, Instant)>>,
}

impl<C> Default for IdlePool<C> {
    fn default() -> Self {
        IdlePool {
            conns: Mutex::new(Vec::new()),
        }
    }
}

impl<C: Reusable> IdlePool<C> {
    /// The newest connection that is usable and idle for less than `max_idle`.
    pub fn take(&self, max_idle: Duration) -> Option<C> {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((mut conn, since)) = conns.pop() {
            if since.elapsed() >= max_idle {
                conns.clear();
                return None;
            }
            if conn.usable() {
                return Some(conn);
            }
        }
        None
    }

    /// Keep `conn` for a later request, unless `max` are kept already.
    pub fn put(&self, conn: C, max: usize) {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if conns.len() < max {
            conns.push((conn, Instant::now()));
        }
    }

    /// Drop every idle connection (the instance is gone).
    pub fn clear(&self) {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        id: u32,
        open: bool,
    }

    impl Reusable for Fake {
        fn usable(&mut self) -> bool {
            self.open
        }
    }

    #[test]
    fn newest_usable_first_and_bounded() {
        let pool = IdlePool::default();
        for (id, open) in [(1, true), (2, true), (3, false)] {
            pool.put(Fake { id, open }, 3);
        }
        pool.put(Fake { id: 4, open: true }, 3);
        let hour = Duration::from_secs(3600);
        // 4 was over the limit; 3 is closed and skipped
        assert_eq!(pool.take(hour).map(|c| c.id), Some(2));
        assert_eq!(pool.take(hour).map(|c| c.id), Some(1));
        assert!(pool.take(hour).is_none());
    }

    #[test]
    fn expired_drops_the_rest() {
        let pool = IdlePool::default();
        pool.put(Fake { id: 1, open: true }, 8);
        pool.put(Fake { id: 2, open: true }, 8);
        assert!(pool.take(Duration::ZERO).is_none());
        assert!(pool.take(Duration::from_secs(3600)).is_none());
    }
}
