//! The few collective operations the [`Trainer`](crate::train::Trainer) needs when a model is
//! trained by several processes at once.
//!
//! A model wrapped for data-parallel training (`convnet::distributed::DataParallel`, feature
//! `mpi`) hands out its process group through [`Layer::collective`](crate::Layer::collective);
//! the trainer then shards its loaders, reduces its metrics over the processes and lets only
//! process 0 print and write checkpoints. A model trained by one process has no group and
//! every trainer path is the single-process one. The trait lives here, below the layers and
//! above nothing, so that the trainer needs no MPI to compile.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::error::Result;

/// A group of `size` processes that each run the same program, numbered `0..size`.
///
/// Every method is collective: all processes of the group call it, in the same order, or it
/// fails (after the implementation's timeout) instead of waiting forever.
pub trait Collective: Send + Sync {
    /// This process's number, `0..size()`.
    fn rank(&self) -> usize;

    /// The number of processes.
    fn size(&self) -> usize;

    /// Replaces `values` on every process by their element-wise sum over the processes.
    fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()>;

    /// Returns process `root`'s `bytes` on every process (the others' `bytes` are ignored).
    fn broadcast_bytes(&self, bytes: Vec<u8>, root: usize) -> Result<Vec<u8>>;
}
