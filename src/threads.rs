//! The one thread pool: rayon's global pool runs every parallel loop of the crate, and the GEMM
//! kernel's own threading runs on it too, so sizing it sizes everything.
//!
//! Built without the `rayon` feature (`default-features = false`) the crate runs every loop on
//! the calling thread: [`num_threads`] is 1 and [`set_num_threads`] accepts only 1.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::error::{Error, Result};

/// Sizes the global thread pool to `n` threads. Call it once, before any parallel work (the
/// pool is created, with one thread per core, by the first parallel loop otherwise).
///
/// Calling it again with the size already in effect is fine. Fails with
/// [`Error::InvalidConfig`] for `n == 0`, or when the pool already exists with a different
/// size (a pool cannot be resized).
///
/// ```
/// let threads = convnet::num_threads(); // creates the pool if needed
/// assert!(convnet::set_num_threads(threads).is_ok());
/// assert!(convnet::set_num_threads(threads + 1).is_err());
/// assert!(convnet::set_num_threads(0).is_err());
/// ```
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::config(
            "set_num_threads",
            "the thread pool needs at least 1 thread",
        ));
    }
    #[cfg(not(feature = "rayon"))]
    return match n {
        1 => Ok(()),
        _ => Err(Error::config(
            "set_num_threads",
            format!("built without the `rayon` feature, the crate runs on 1 thread, not {n}"),
        )),
    };
    #[cfg(feature = "rayon")]
    set_pool_size(n)
}

/// The number of threads the crate's parallel loops run on (creating the pool if needed); 1
/// without the `rayon` feature.
pub fn num_threads() -> usize {
    crate::parallel::current_num_threads()
}

#[cfg(feature = "rayon")]
fn set_pool_size(n: usize) -> Result<()> {
    if rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .is_ok()
    {
        return Ok(());
    }
    let current = rayon::current_num_threads();
    if current == n {
        Ok(())
    } else {
        Err(Error::config(
            "set_num_threads",
            format!(
                "the thread pool already runs {current} threads and cannot be resized to {n}; \
                 call set_num_threads before any parallel work"
            ),
        ))
    }
}
