//! Reusable scratch buffers, so that kernels do not allocate and zero fresh memory per call.
//!
//! Each thread keeps a few buffers it has used before. [`take`] hands one out (growing it
//! when it is too short); dropping the [`Workspace`] gives it back to the pool of the thread
//! that drops it. A reused buffer holds whatever its last user wrote: kernels take one only
//! where they overwrite every element they later read (im2col columns, GEMM outputs with
//! `accumulate = false`), or call [`Workspace::zeroed`].

use crate::tensor::Float;
use std::any::Any;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// How many idle buffers one thread keeps.
const KEEP: usize = 6;

thread_local! {
    static POOL: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer of `len` elements borrowed from the calling thread's pool.
pub struct Workspace<T: Float> {
    buf: Vec<T>,
    len: usize,
}

/// A buffer of at least `len` elements with unspecified contents (previous use, or zero).
pub fn take<T: Float>(len: usize) -> Workspace<T> {
    let reused = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        // The smallest idle buffer of this element type that holds `len` (so small requests
        // leave the big buffers to big ones), else the largest (the one to grow).
        let sizes = pool
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.downcast_ref::<Vec<T>>().map(|v| (i, v.len())));
        let fits = sizes
            .clone()
            .filter(|&(_, n)| n >= len)
            .min_by_key(|&(_, n)| n);
        let best = fits
            .or_else(|| sizes.max_by_key(|&(_, n)| n))
            .map(|(i, _)| i);
        best.map(|i| pool.swap_remove(i))
    });
    let mut buf = reused
        .and_then(|b| b.downcast::<Vec<T>>().ok())
        .map(|b| *b)
        .unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    Workspace { buf, len }
}

impl<T: Float> Workspace<T> {
    /// The buffer with every element set to zero.
    pub fn zeroed(mut self) -> Self {
        self.fill(T::zero());
        self
    }
}

impl<T: Float> Deref for Workspace<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[..self.len]
    }
}

impl<T: Float> DerefMut for Workspace<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[..self.len]
    }
}

impl<T: Float> Drop for Workspace<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.is_empty() {
            return;
        }
        // `try_with`: during thread teardown the pool may already be gone; then just free.
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            pool.push(Box::new(buf));
            if pool.len() > KEEP {
                // Drop the smallest idle buffer.
                let smallest = pool
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, b)| {
                        b.downcast_ref::<Vec<f32>>()
                            .map(|v| v.len() * 4)
                            .or_else(|| b.downcast_ref::<Vec<f64>>().map(|v| v.len() * 8))
                            .unwrap_or(0)
                    })
                    .map(|(i, _)| i);
                if let Some(i) = smallest {
                    pool.swap_remove(i);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_sized() {
        let a = take::<f32>(1000);
        let ptr = a.as_ptr();
        assert_eq!(a.len(), 1000);
        drop(a);
        // The same allocation comes back for a smaller request on the same thread.
        let b = take::<f32>(10);
        assert_eq!(b.len(), 10);
        assert_eq!(b.as_ptr(), ptr);
        // A second buffer taken while the first is out is a different one.
        let c = take::<f32>(10);
        assert_ne!(c.as_ptr(), b.as_ptr());
        // Element types do not mix.
        let d = take::<f64>(5).zeroed();
        assert!(d.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn small_requests_leave_the_big_buffer_to_big_ones() {
        let (big, small) = (take::<f32>(4096), take::<f32>(16));
        let (big_ptr, small_ptr) = (big.as_ptr(), small.as_ptr());
        drop((big, small));
        // Best fit: the small request gets the small buffer, and the big one, taken while
        // the small one is out, is the big buffer as it was (not a grown copy).
        let s = take::<f32>(8);
        let b = take::<f32>(4000);
        assert_eq!((s.as_ptr(), b.as_ptr()), (small_ptr, big_ptr));
        // Too big for every idle buffer: the largest grows.
        drop((s, b));
        let huge = take::<f32>(10_000);
        assert_eq!(huge.len(), 10_000);
    }

    #[test]
    fn zeroed_clears_previous_contents() {
        let mut a = take::<f64>(64);
        a.fill(3.0);
        drop(a);
        let b = take::<f64>(64).zeroed();
        assert!(b.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn pool_keeps_a_bounded_number_of_buffers() {
        let held: Vec<_> = (0..3 * KEEP).map(|i| take::<f32>(i + 1)).collect();
        drop(held);
        let idle = POOL.with(|p| p.borrow().len());
        assert!(idle <= KEEP, "{idle} idle buffers");
    }
}
