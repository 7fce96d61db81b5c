//! Measures the gradient all-reduce of `convnet::distributed` (feature `mpi`): the time to
//! average buffers of 1 K to 64 M f32 values over the processes, and the bandwidth it implies.
//!
//! ```text
//! cargo build --release --features mpi --example allreduce
//! mpirun -np 2 target/release/examples/allreduce
//! ```
//!
//! "Bus bandwidth" is the usual all-reduce figure: `bytes · 2(p-1)/p / time`, what each
//! process sends (and receives) per second with a ring algorithm, comparable to a link's speed.

use convnet::distributed::{mpi, Communicator};
use std::time::Instant;

fn main() -> convnet::Result<()> {
    let universe = mpi::initialize().expect("MPI initialises once");
    let comm = Communicator::new(&universe.world())?;
    let p = comm.size() as f64;
    if comm.rank() == 0 {
        println!("{} processes", comm.size());
        println!(
            "{:>12} {:>12} {:>12} {:>14}",
            "values", "bytes", "time", "bus bandwidth"
        );
    }
    for log in (10..=26).step_by(2) {
        let n = 1usize << log;
        let mut values = vec![1.0f32; n];
        let repeats = (1 << 26) / n.max(1 << 18) + 2;
        comm.all_reduce_sum(&mut values)?; // warm up
        comm.barrier()?;
        let start = Instant::now();
        for _ in 0..repeats {
            comm.all_reduce_sum(&mut values)?;
        }
        let seconds = start.elapsed().as_secs_f64() / repeats as f64;
        let bytes = (n * 4) as f64;
        if comm.rank() == 0 {
            println!(
                "{:>12} {:>10.1} MB {:>9.3} ms {:>10.2} GB/s",
                n,
                bytes / 1e6,
                seconds * 1e3,
                bytes * 2.0 * (p - 1.0) / p / seconds / 1e9
            );
        }
    }
    Ok(())
}
