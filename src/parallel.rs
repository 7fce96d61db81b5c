//! The crate's parallel loops, with or without threads.
//!
//! With the `rayon` feature (the default) `prelude` is rayon's and every `par_*` loop runs on
//! the global pool. Without it the same method names (`par_chunks`, `par_chunks_mut`,
//! `par_iter`, `par_iter_mut`, `into_par_iter`, `for_each_init`, `try_for_each_init`) give std's sequential
//! iterators, so a kernel's code is the same in both builds and visits the same items in the
//! same order on one thread.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// Rayon's parallel iterators.
#[cfg(feature = "rayon")]
pub(crate) mod prelude {
    pub(crate) use rayon::prelude::*;
}

/// Sequential stand-ins with rayon's method names.
#[cfg(not(feature = "rayon"))]
pub(crate) mod prelude {
    /// `par_chunks` and `par_iter` over a shared slice.
    pub(crate) trait ParallelSlice<T> {
        /// `chunks(size)`.
        fn par_chunks(&self, size: usize) -> std::slice::Chunks<'_, T>;
        /// `iter()`.
        fn par_iter(&self) -> std::slice::Iter<'_, T>;
    }

    impl<T> ParallelSlice<T> for [T] {
        fn par_chunks(&self, size: usize) -> std::slice::Chunks<'_, T> {
            self.chunks(size)
        }
        fn par_iter(&self) -> std::slice::Iter<'_, T> {
            self.iter()
        }
    }

    /// `par_chunks_mut` and `par_iter_mut` over a mutable slice.
    pub(crate) trait ParallelSliceMut<T> {
        /// `chunks_mut(size)`.
        fn par_chunks_mut(&mut self, size: usize) -> std::slice::ChunksMut<'_, T>;
        /// `iter_mut()`.
        fn par_iter_mut(&mut self) -> std::slice::IterMut<'_, T>;
    }

    impl<T> ParallelSliceMut<T> for [T] {
        fn par_chunks_mut(&mut self, size: usize) -> std::slice::ChunksMut<'_, T> {
            self.chunks_mut(size)
        }
        fn par_iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
            self.iter_mut()
        }
    }

    /// `into_par_iter` for anything iterable (ranges, vectors).
    pub(crate) trait IntoParallelIterator: IntoIterator + Sized {
        /// `into_iter()`.
        fn into_par_iter(self) -> Self::IntoIter {
            self.into_iter()
        }
    }

    impl<I: IntoIterator> IntoParallelIterator for I {}

    /// Rayon's `for_each_init`: one state for the whole (sequential) loop.
    pub(crate) trait ParallelIterator: Iterator + Sized {
        /// Calls `op(&mut state, item)` for every item, with `state = init()` made once.
        fn for_each_init<S, I, F>(self, init: I, mut op: F)
        where
            I: FnOnce() -> S,
            F: FnMut(&mut S, Self::Item),
        {
            let mut state = init();
            self.for_each(|item| op(&mut state, item));
        }

        /// Rayon's `try_for_each_init`: as `for_each_init`, stopping at the first error.
        fn try_for_each_init<S, I, F, E>(mut self, init: I, mut op: F) -> Result<(), E>
        where
            I: FnOnce() -> S,
            F: FnMut(&mut S, Self::Item) -> Result<(), E>,
        {
            let mut state = init();
            self.try_for_each(|item| op(&mut state, item))
        }
    }

    impl<It: Iterator> ParallelIterator for It {}
}

/// How the GEMM kernel may split a product: over the global rayon pool (`Rayon(0)`), or not at
/// all without the `rayon` feature.
#[cfg(feature = "rayon")]
pub(crate) const GEMM_POOL: gemm::Parallelism = gemm::Parallelism::Rayon(0);
/// How the GEMM kernel may split a product: over the global rayon pool (`Rayon(0)`), or not at
/// all without the `rayon` feature.
#[cfg(not(feature = "rayon"))]
pub(crate) const GEMM_POOL: gemm::Parallelism = gemm::Parallelism::None;

/// The number of threads parallel loops run on: the rayon pool's size (1 without `rayon`).
pub(crate) fn current_num_threads() -> usize {
    #[cfg(feature = "rayon")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        1
    }
}
