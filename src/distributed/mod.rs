//! Data-parallel training over MPI (feature `mpi`): the scheme of PyTorch's
//! DistributedDataParallel and Horovod on the system's MPI library (Open MPI, MPICH).
//!
//! ```no_run
//! use convnet::distributed::{mpi, DataParallel};
//! use convnet::prelude::*;
//!
//! # fn main() -> convnet::Result<()> {
//! let universe = mpi::initialize().expect("MPI initialised once");
//! let world = universe.world();
//! let model = convnet::zoo::lenet5_modern::<f32>(10)?;
//! // Process 0's initial weights go to every process; backward averages the gradients.
//! let model = DataParallel::new(model, &world)?;
//! # let _ = model;
//! # Ok(())
//! # }
//! ```
//!
//! With a [`Trainer`](crate::train::Trainer) nothing else changes: it finds the process group
//! through [`Layer::collective`](crate::Layer::collective), gives each process its share of
//! every global batch (the loader's `batch_size` is the global batch), reduces loss and
//! accuracy over the processes, and lets process 0 alone print and write checkpoints.
//! Run with `mpirun -np 2 target/release/examples/mnist --distributed`; see
//! `docs/DISTRIBUTED.md`.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod comm;
mod data_parallel;
mod sync_batch_norm;

pub use comm::{Communicator, DEFAULT_TIMEOUT};
pub use data_parallel::{DataParallel, DEFAULT_BUCKET_BYTES};
pub use sync_batch_norm::SyncBatchNorm2d;

/// The `mpi` crate (rsmpi) this module is built on, so callers need not depend on a matching
/// version themselves.
pub use mpi;
