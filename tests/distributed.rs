//! Data-parallel training under `mpirun` (feature `mpi`; `cargo test --features mpi --test
//! distributed`).
//!
//! Run as a test, this binary is the driver: it starts `mpirun -np N <itself> --worker
//! SCENARIO` for each scenario, on this machine only (shared memory and loopback:
//! `OMPI_MCA_btl=self,vader`), with a time limit, and checks every rank's verdict. Started by
//! `mpirun` with `--worker`, it is one rank of a scenario.

use convnet::data::{DataLoader, ImageSet, LoaderConfig};
use convnet::distributed::{mpi, Communicator, DataParallel, SyncBatchNorm2d};
use convnet::io::state_dict;
use convnet::optim::{Adam, AdamConfig, Sgd, SgdConfig};
use convnet::prelude::*;
use convnet::progress::ProgressStyle;
use convnet::train::Trainer;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        let scenario = args.get(i + 1).cloned().unwrap_or_default();
        worker(&scenario);
        return;
    }
    driver(&args[1..]);
}

// ---------------------------------------------------------------------------------------------
// The driver

/// `(scenario, ranks, the job must succeed)`.
const RUNS: &[(&str, usize, bool)] = &[
    ("replicas", 2, true),
    ("replicas", 3, true),
    ("equivalence", 2, true),
    ("equivalence", 3, true),
    ("syncbn", 2, true),
    ("syncbn", 3, true),
    ("loader", 2, true),
    ("loader", 3, true),
    ("trainer", 2, true),
    ("threads", 2, true),
    ("reshaped", 1, true),
    ("mismatch", 2, true),
    ("mismatch", 3, true),
    ("late_drop", 2, true),
    ("skip", 2, false),
    ("crash", 2, false),
];

/// No scenario may take longer (they take a few seconds; a hang is a failure, not a wait).
const JOB_LIMIT: Duration = Duration::from_secs(120);

fn driver(filters: &[String]) {
    let filters: Vec<&String> = filters.iter().filter(|a| !a.starts_with('-')).collect();
    let exe = std::env::current_exe().expect("own path");
    let mut failures = Vec::new();
    for &(scenario, ranks, succeeds) in RUNS {
        let name = format!("{scenario}_np{ranks}");
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let start = Instant::now();
        let (status, output) = run_mpi(&exe, scenario, ranks);
        let seconds = start.elapsed().as_secs_f64();
        let verdict = check(scenario, ranks, succeeds, status, &output, seconds);
        match verdict {
            Ok(()) => println!("test {name} ... ok ({seconds:.1} s)"),
            Err(why) => {
                println!("test {name} ... FAILED ({seconds:.1} s): {why}\n{output}");
                failures.push(name);
            }
        }
    }
    if !failures.is_empty() {
        println!("failed: {failures:?}");
        std::process::exit(1);
    }
}

/// Runs `mpirun -np ranks exe --worker scenario` and returns its exit code (None: killed
/// after [`JOB_LIMIT`]) and its stdout and stderr.
fn run_mpi(exe: &std::path::Path, scenario: &str, ranks: usize) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!(
        "convnet-mpi-{}-{scenario}-{ranks}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut child = Command::new("mpirun")
        .args([
            "-np",
            &ranks.to_string(),
            "--oversubscribe",
            "--bind-to",
            "none",
        ])
        .arg(exe)
        .args(["--worker", scenario])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // This machine only: shared memory and the process itself, never the network.
        .env("OMPI_MCA_btl", "self,vader")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("RAYON_NUM_THREADS", "1")
        .env("CONVNET_TEST_DIR", &dir)
        .stdout(Stdio::from(
            std::fs::File::create(dir.join("out.txt")).expect("out"),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("err.txt")).expect("err"),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start mpirun (is Open MPI installed?): {e}"));
    let deadline = Instant::now() + JOB_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().or(Some(-1));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let output = format!("{}{}", read("out.txt"), read("err.txt"));
    let _ = std::fs::remove_dir_all(&dir);
    (status, output)
}

fn check(
    scenario: &str,
    ranks: usize,
    succeeds: bool,
    status: Option<i32>,
    output: &str,
    seconds: f64,
) -> Result<(), String> {
    let Some(code) = status else {
        return Err(format!("still running after {JOB_LIMIT:?}: a hang"));
    };
    if succeeds {
        if code != 0 {
            return Err(format!("mpirun exited with {code}"));
        }
        for rank in 0..ranks {
            let pass = format!("rank {rank}/{ranks} PASS {scenario}");
            if !output.contains(&pass) {
                return Err(format!("no `{pass}` line"));
            }
        }
        return Ok(());
    }
    if code == 0 {
        return Err("the job succeeded although a rank left it".into());
    }
    if seconds > 60.0 {
        return Err(format!("the job took {seconds:.0} s to fail"));
    }
    if scenario == "skip" && !output.contains("rank 0/2 ERROR distributed training:") {
        return Err("rank 0 did not report the failed collective as an error".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The workers

fn worker(scenario: &str) {
    let universe = mpi::initialize().expect("MPI initialises once");
    let world = universe.world();
    let comm = Communicator::new(&world).expect("communicator");
    let (rank, size) = (comm.rank(), comm.size());
    let mut kept = None;
    let result = match scenario {
        "replicas" => replicas(&world),
        "equivalence" => equivalence(&world),
        "loader" => loader(&comm),
        "syncbn" => syncbn(&world),
        "trainer" => trainer(&world),
        "threads" => threads(&world),
        "reshaped" => reshaped(&world),
        "mismatch" => mismatch(&world),
        "late_drop" => late_drop(&world).map(|model| kept = Some(model)),
        "skip" => skip(&world),
        "crash" => crash(&world),
        other => Err(format!("unknown scenario {other}")),
    };
    if scenario == "late_drop" {
        // MPI finalizes here, while a communicator and a wrapped model still live; dropping
        // them afterwards must neither abort nor panic.
        drop(universe);
        if let Err(why) = result {
            println!("rank {rank}/{size} ERROR {why}");
            return;
        }
        drop(kept);
        drop(comm);
        println!("rank {rank}/{size} PASS {scenario}");
        return;
    }
    match result {
        Ok(()) => println!("rank {rank}/{size} PASS {scenario}"),
        Err(why) => {
            println!("rank {rank}/{size} ERROR {why}");
            // The others may wait in an operation this rank will never join.
            comm.abort(2);
        }
    }
}

type Check = Result<(), String>;

fn e(err: convnet::Error) -> String {
    err.to_string()
}

/// `n` random 8x8 images with labels in 0..4, the same on every rank.
fn images(n: usize, seed: u64) -> ImageSet {
    let mut rng = Rng64::seed(seed);
    let pixels = (0..n * 64).map(|_| rng.below(256) as u8).collect();
    let labels = (0..n).map(|_| rng.below(4) as u8).collect();
    ImageSet::new(pixels, labels, 8, 8, 4).expect("image set")
}

/// A small CNN; with `bn` a batch norm after the convolution (buffers to keep in step).
fn small_cnn<T: Float>(bn: bool) -> Sequential<T> {
    let mut net =
        Sequential::new().add(Conv2d::new(Conv2dConfig::new(1, 4, 3).padding(1)).expect("conv"));
    if bn {
        net = net.add(BatchNorm2d::new(BatchNorm2dConfig::new(4)).expect("bn"));
    }
    net.add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2)).expect("pool"))
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(4 * 4 * 4, 4)).expect("linear"))
}

/// Every parameter and buffer, flattened in `state_dict` order.
fn flat<T: Float>(model: &dyn Layer<T>) -> Vec<f64> {
    state_dict(model)
        .into_iter()
        .flat_map(|(_, t)| t.iter().map(|v| v.as_f64()).collect::<Vec<_>>())
        .collect()
}

/// How many ranks hold values that differ (in any bit) from rank 0's.
fn ranks_differing(comm: &Communicator, values: &[f64]) -> Result<f64, String> {
    let root = comm.broadcast(values.to_vec(), 0).map_err(e)?;
    let same = root.len() == values.len()
        && root
            .iter()
            .zip(values)
            .all(|(a, b)| a.to_bits() == b.to_bits());
    let mut differ = [f64::from(u8::from(!same))];
    comm.all_reduce_sum(&mut differ).map_err(e)?;
    Ok(differ[0])
}

/// Replicas start from different seeds, train on different data with SGD then Adam, and stay
/// bit-identical (parameters and batch-norm buffers) after every step.
fn replicas(world: &impl mpi::traits::Communicator) -> Check {
    let comm = Communicator::new(world).map_err(e)?;
    let rank = comm.rank();
    convnet::init::manual_seed(1000 + rank as u64);
    let model = small_cnn::<f32>(true);
    if ranks_differing(&comm, &flat(&model))? != (comm.size() - 1) as f64 {
        return Err("the per-rank seeds should give different initial weights".into());
    }
    let mut model = DataParallel::new(model, world)
        .map_err(e)?
        .with_bucket_bytes(256); // several buckets, to exercise bucketing
    if model.bucket_ranges().len() < 3 {
        return Err(format!(
            "expected several buckets, got {:?}",
            model.bucket_ranges()
        ));
    }
    if ranks_differing(&comm, &flat(&model))? != 0.0 {
        return Err("replicas differ after DataParallel::new".into());
    }
    let data = images(64, 7 + rank as u64); // different data on every rank
    let loader =
        DataLoader::new(&data, LoaderConfig::new(6 + rank).shuffle(rank as u64)).map_err(e)?;
    let mut sgd = Sgd::new(SgdConfig::new(0.05).momentum(0.9).nesterov(true)).map_err(e)?;
    let mut adam = Adam::new(AdamConfig::new(1e-2)).map_err(e)?;
    for (step, batch) in loader.epoch::<f32>(0).take(8).enumerate() {
        let batch = batch.map_err(e)?;
        let logits = model.forward(&batch.images).map_err(e)?;
        let (_, grad) = CrossEntropyLoss::new()
            .forward(&logits, &batch.labels)
            .map_err(e)?;
        model.zero_grad();
        model.backward(&grad).map_err(e)?;
        if step < 4 {
            sgd.step(&mut model).map_err(e)?;
        } else {
            adam.step(&mut model).map_err(e)?;
        }
        let differing = ranks_differing(&comm, &flat(&model))?;
        if differing != 0.0 {
            return Err(format!(
                "{differing} replicas differ after step {}",
                step + 1
            ));
        }
    }
    Ok(())
}

/// `ranks` processes at global batch B give the weights of one process at batch B: every
/// rank also trains the single-process reference itself and compares (f32 SGD and f64 Adam,
/// no dropout or batch norm; B = 10 splits unevenly over 3 ranks).
fn equivalence(world: &impl mpi::traits::Communicator) -> Check {
    fn run<T: Float>(world: &impl mpi::traits::Communicator, adam: bool, tolerance: f64) -> Check {
        let data = images(50, 3);
        let cfg = LoaderConfig::new(10).shuffle(11).max_shift(1);
        let loader = DataLoader::new(&data, cfg).map_err(e)?;
        let optimizer = |adam: bool| -> Box<dyn Optimizer<T>> {
            if adam {
                Box::new(Adam::new(AdamConfig::new(1e-2)).expect("adam"))
            } else {
                Box::new(Sgd::new(SgdConfig::new(0.1).momentum(0.9)).expect("sgd"))
            }
        };
        convnet::init::manual_seed(5);
        let mut single = small_cnn::<T>(false);
        convnet::init::manual_seed(5);
        let mut dp = DataParallel::new(small_cnn::<T>(false), world).map_err(e)?;
        let rank = dp.rank();
        let shard = loader.sharded(rank, dp.world_size()).map_err(e)?;
        let (mut opt_single, mut opt_dp) = (optimizer(adam), optimizer(adam));
        let loss = CrossEntropyLoss::new();
        let mut steps = 0;
        for (whole, mine) in loader.epoch::<T>(0).zip(shard.epoch::<T>(0)) {
            let (whole, mine) = (whole.map_err(e)?, mine.map_err(e)?);
            let logits = single.forward(&whole.images).map_err(e)?;
            let (_, g) = loss.forward(&logits, &whole.labels).map_err(e)?;
            single.zero_grad();
            single.backward(&g).map_err(e)?;
            opt_single.step(&mut single).map_err(e)?;

            let logits = dp.forward(&mine.images).map_err(e)?;
            let (_, g) = loss.forward(&logits, &mine.labels).map_err(e)?;
            dp.zero_grad();
            dp.backward(&g).map_err(e)?;
            opt_dp.step(&mut dp).map_err(e)?;
            steps += 1;
        }
        if steps != 5 {
            return Err(format!("expected 5 steps, ran {steps}"));
        }
        let (a, b) = (flat(&dp), flat(&single));
        let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
        let norm: f64 = b.iter().map(|y| y * y).sum::<f64>();
        let relative = (diff / norm).sqrt();
        let moved: f64 = {
            convnet::init::manual_seed(5);
            let start = flat(&small_cnn::<T>(false));
            let d: f64 = start.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
            (d / norm).sqrt()
        };
        if relative.is_nan() || relative > tolerance || moved < 1e-3 {
            return Err(format!(
                "{}: relative difference {relative:e} to one process (tolerance {tolerance:e}; \
                 the weights moved {moved:e})",
                T::DTYPE
            ));
        }
        if rank == 0 {
            println!(
                "{} {}: relative difference to one process {relative:.2e} after {steps} steps",
                T::DTYPE,
                if adam { "adam" } else { "sgd" }
            );
        }
        Ok(())
    }
    run::<f32>(world, false, 1e-5)?;
    run::<f64>(world, true, 1e-10)
}

/// Synchronised batch norm: a data-parallel model with `SyncBatchNorm2d` computes what one
/// process computes with `BatchNorm2d` on the whole batch (weights, running statistics, loss),
/// while the default per-process `BatchNorm2d` does not.
/// Parameters reshaped behind the wrapper's back (`inner_mut`, `visit_mut`) are an error, not a
/// panic while cutting the flat buffers: DataParallel's `synchronize` and `broadcast_state`,
/// and SyncBatchNorm2d's forward, backward and inference (docs/ERRORS.md, class 14).
/// A wrapped model that the caller keeps past the end of MPI (see `worker`).
fn late_drop(
    world: &impl mpi::traits::Communicator,
) -> Result<DataParallel<f32, Linear<f32>>, String> {
    let linear = Linear::<f32>::new(LinearConfig::new(4, 3)).map_err(e)?;
    DataParallel::new(linear, world).map_err(e)
}

/// Processes that built different models: `DataParallel::new` fails on every one of them with
/// an error (no hang, no silently averaged garbage), whether the last rank's model has a
/// tensor of another size, an extra layer, or the same sizes under other names; a model that
/// agrees everywhere then still wraps.
fn mismatch(world: &impl mpi::traits::Communicator) -> Check {
    let comm = Communicator::new(world).map_err(e)?;
    let last = comm.rank() + 1 == comm.size();
    let linear = |i: usize, o: usize| Linear::<f32>::new(LinearConfig::new(i, o)).map_err(e);
    let cases: [(&str, Sequential<f32>); 3] = [
        (
            "a wider layer",
            Sequential::new().add(linear(4, if last { 5 } else { 3 })?),
        ),
        ("an extra layer", {
            let net = Sequential::new().add(linear(4, 4)?);
            if last {
                net.add(linear(4, 4)?)
            } else {
                net
            }
        }),
        ("other names", {
            // Same sizes in the same order; on the last rank the weight sits one level deeper.
            let inner = Sequential::new().add(linear(4, 4)?);
            if last {
                Sequential::new().add(inner)
            } else {
                inner
            }
        }),
    ];
    for (what, model) in cases {
        match DataParallel::new(model, world) {
            Err(Error::Distributed(m)) if m.contains("differ from process 0") => {
                let here = m.contains("this one among them");
                if here != last {
                    return Err(format!("{what}: the message names the wrong ranks: {m}"));
                }
            }
            Err(other) => return Err(format!("{what}: unexpected error {other}")),
            Ok(_) => return Err(format!("{what}: different models were wrapped")),
        }
    }
    DataParallel::new(Sequential::new().add(linear(4, 3)?), world).map_err(e)?;
    Ok(())
}

fn reshaped(world: &impl mpi::traits::Communicator) -> Check {
    let comm = Arc::new(Communicator::new(world).map_err(e)?);
    let reshape = |layer: &mut dyn Layer<f64>, key: &str, len: usize| {
        layer.visit_mut(&mut |name, slot| {
            if let (true, convnet::SlotMut::Param(p)) = (name.ends_with(key), slot) {
                p.value = Tensor::zeros(ndarray::IxDyn(&[len]));
                p.grad = Tensor::zeros(ndarray::IxDyn(&[len]));
            }
        })
    };
    let linear = Linear::<f64>::new(LinearConfig::new(4, 3)).map_err(e)?;
    let mut dp = DataParallel::with_communicator(linear, comm.clone()).map_err(e)?;
    let x = Tensor::<f64>::ones(ndarray::IxDyn(&[2, 4]));
    let y = dp.forward(&x).map_err(e)?;
    dp.backward(&Tensor::ones(y.raw_dim())).map_err(e)?;
    reshape(dp.inner_mut(), "bias", 7);
    for (what, result) in [
        ("synchronize", dp.synchronize()),
        ("broadcast_state", dp.broadcast_state()),
    ] {
        match result {
            Err(Error::Distributed(m)) if m.contains("changed shape") => {}
            other => return Err(format!("{what} after a reshape: {other:?}")),
        }
    }
    let mut bn = SyncBatchNorm2d::<f64>::new(BatchNorm2dConfig::new(3), comm).map_err(e)?;
    let x = Tensor::<f64>::ones(ndarray::IxDyn(&[2, 3, 2, 2]));
    let y = bn.forward(&x).map_err(e)?;
    reshape(&mut bn, "weight", 2);
    let results = [
        ("forward", bn.forward(&x).map(|_| ())),
        ("backward", bn.backward(&y).map(|_| ())),
        ("infer", bn.infer(&x).map(|_| ())),
    ];
    for (what, result) in results {
        match result {
            Err(Error::ShapeMismatch { layer, .. }) if layer.contains("weight") => {}
            other => return Err(format!("SyncBatchNorm2d {what} after a reshape: {other:?}")),
        }
    }
    Ok(())
}

fn syncbn(world: &impl mpi::traits::Communicator) -> Check {
    let comm = Arc::new(Communicator::new(world).map_err(e)?);
    let model = |sync: bool| -> Sequential<f64> {
        convnet::init::manual_seed(21);
        let net = Sequential::new()
            .add(Conv2d::new(Conv2dConfig::new(1, 3, 3).padding(1)).expect("conv"));
        let cfg = BatchNorm2dConfig::new(3).momentum(0.3);
        let net = if sync {
            net.add(SyncBatchNorm2d::new(cfg, comm.clone()).expect("sync bn"))
        } else {
            net.add(BatchNorm2d::new(cfg).expect("bn"))
        };
        net.add(ReLU::new())
            .add(Flatten::new(FlattenConfig::new()).unwrap())
            .add(Linear::new(LinearConfig::new(3 * 8 * 8, 4)).expect("linear"))
    };
    let data = images(30, 6);
    let loader = DataLoader::new(&data, LoaderConfig::new(10).shuffle(1)).map_err(e)?;
    let shard = loader.sharded(comm.rank(), comm.size()).map_err(e)?;
    let loss = CrossEntropyLoss::new();
    let mut single = model(false);
    let mut opt = Sgd::new(SgdConfig::new(0.1)).map_err(e)?;
    for batch in loader.epoch::<f64>(0) {
        let batch = batch.map_err(e)?;
        let logits = single.forward(&batch.images).map_err(e)?;
        let (_, g) = loss.forward(&logits, &batch.labels).map_err(e)?;
        single.zero_grad();
        single.backward(&g).map_err(e)?;
        opt.step(&mut single).map_err(e)?;
    }
    let reference = flat(&single);
    let mut gaps = Vec::new();
    for sync in [true, false] {
        let mut dp = DataParallel::with_communicator(model(sync), comm.clone()).map_err(e)?;
        let mut opt = Sgd::new(SgdConfig::new(0.1)).map_err(e)?;
        for batch in shard.epoch::<f64>(0) {
            let batch = batch.map_err(e)?;
            let logits = dp.forward(&batch.images).map_err(e)?;
            let (_, g) = loss.forward(&logits, &batch.labels).map_err(e)?;
            dp.zero_grad();
            dp.backward(&g).map_err(e)?;
            opt.step(&mut dp).map_err(e)?;
        }
        let mine = flat(&dp);
        let diff: f64 = mine
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        let norm: f64 = reference.iter().map(|b| b * b).sum();
        gaps.push((diff / norm).sqrt());
        if ranks_differing(&comm, &mine)? != 0.0 {
            return Err(format!("replicas differ (sync {sync})"));
        }
    }
    if comm.rank() == 0 {
        println!(
            "relative difference to one process: SyncBatchNorm2d {:.1e}, per-process BatchNorm2d {:.1e}",
            gaps[0], gaps[1]
        );
    }
    if gaps[0].is_nan() || gaps[0] >= 1e-10 || gaps[1].is_nan() || gaps[1] <= 1e-6 {
        return Err(format!(
            "sync batch norm {:e} (want < 1e-10), per-process {:e} (want > 1e-6)",
            gaps[0], gaps[1]
        ));
    }
    Ok(())
}

/// The sharded loader gives every sample exactly once per epoch over the ranks, and every
/// rank runs the same number of steps.
fn loader(comm: &Communicator) -> Check {
    let data = images(23, 1);
    for (batch, drop_last) in [(5, false), (4, true), (1, false)] {
        let cfg = LoaderConfig::new(batch).shuffle(9).drop_last(drop_last);
        let shard = DataLoader::new(&data, cfg.shard(comm.rank(), comm.size())).map_err(e)?;
        let whole = DataLoader::new(&data, cfg).map_err(e)?;
        for epoch in 0..2 {
            let order = whole.order(epoch);
            let mut counts = vec![0.0f64; 23];
            let mut steps = [0.0f64];
            for b in shard.epoch::<f32>(epoch) {
                let b = b.map_err(e)?;
                steps[0] += 1.0;
                for i in 0..b.labels.len() {
                    // Find the sample by its pixels (labels repeat).
                    let img: Vec<f32> = b
                        .images
                        .index_axis(ndarray::Axis(0), i)
                        .to_owned()
                        .into_iter()
                        .collect();
                    let mut buf = vec![0f32; 64];
                    let index = (0..23)
                        .find(|&j| {
                            convnet::data::Dataset::sample(&data, j, &mut buf).is_ok() && buf == img
                        })
                        .ok_or("a batch holds an image that is not in the set")?;
                    counts[index] += 1.0;
                }
            }
            comm.all_reduce_sum(&mut counts).map_err(e)?;
            let expected_steps = whole.num_batches() as f64;
            let mut all_steps = steps;
            comm.all_reduce_sum(&mut all_steps).map_err(e)?;
            if all_steps[0] != expected_steps * comm.size() as f64 || steps[0] != expected_steps {
                return Err(format!("steps: {} here, {} in all", steps[0], all_steps[0]));
            }
            let kept: Vec<usize> = if drop_last {
                order[..whole.num_batches() * batch].to_vec()
            } else {
                order.clone()
            };
            for (j, &c) in counts.iter().enumerate() {
                let want = if kept.contains(&j) { 1.0 } else { 0.0 };
                if c != want {
                    return Err(format!(
                        "batch {batch}, epoch {epoch}: sample {j} seen {c} times, expected {want}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The Trainer runs distributed unchanged: its epoch loss and accuracy are those of one
/// process on the same global batches, its evaluation covers every sample once, only rank 0
/// writes the checkpoint, and every rank resumes from it.
fn trainer(world: &impl mpi::traits::Communicator) -> Check {
    let data = images(40, 4);
    let cfg = LoaderConfig::new(8).shuffle(2);
    let loader = DataLoader::new(&data, cfg).map_err(e)?;
    let test = DataLoader::new(&data, LoaderConfig::new(7)).map_err(e)?;
    let dir =
        std::path::PathBuf::from(std::env::var("CONVNET_TEST_DIR").map_err(|v| v.to_string())?);
    let path = dir.join("checkpoint.safetensors");

    convnet::init::manual_seed(8);
    let mut single = Trainer::new(
        small_cnn::<f64>(false),
        Sgd::new(SgdConfig::new(0.1)).map_err(e)?,
    )
    .with_progress(ProgressStyle::Off);
    convnet::init::manual_seed(8);
    let model = DataParallel::new(small_cnn::<f64>(false), world).map_err(e)?;
    let rank = model.rank();
    let mut dp = Trainer::new(model, Sgd::new(SgdConfig::new(0.1)).map_err(e)?)
        .with_progress(ProgressStyle::Off);
    if dp.world_size() < 2 || dp.is_main_process() != (rank == 0) {
        return Err("the trainer does not see the process group".into());
    }
    for _ in 0..2 {
        let a = single.train_epoch(&loader).map_err(e)?;
        let b = dp.train_epoch(&loader).map_err(e)?;
        if (a.loss - b.loss).abs() > 1e-10 * a.loss.abs()
            || a.accuracy != b.accuracy
            || a.images != b.images
        {
            return Err(format!(
                "epoch stats differ: one process {a:?}, distributed {b:?}"
            ));
        }
    }
    let (a, b) = (
        single.evaluate(&test).map_err(e)?,
        dp.evaluate(&test).map_err(e)?,
    );
    if a.total != 40
        || b.total != 40
        || a.correct != b.correct
        || a.confusion != b.confusion
        || (a.loss - b.loss).abs() > 1e-10
    {
        return Err(format!(
            "evaluation differs: one process {a:?}, distributed {b:?}"
        ));
    }
    dp.save_checkpoint(&path).map_err(e)?;
    if !path.exists() {
        return Err("no checkpoint after save_checkpoint".into());
    }
    // Resume on every rank into a fresh trainer whose weights differ per rank.
    convnet::init::manual_seed(100 + rank as u64);
    let fresh = small_cnn::<f64>(false);
    let model = DataParallel::new(fresh, world).map_err(e)?;
    let mut resumed = Trainer::new(model, Sgd::new(SgdConfig::new(0.1)).map_err(e)?)
        .with_progress(ProgressStyle::Off);
    resumed.load_checkpoint(&path).map_err(e)?;
    if resumed.epoch() != 2 || flat(&resumed.model) != flat(&dp.model) {
        return Err("the resumed trainer differs from the one that saved".into());
    }
    let a = single.train_epoch(&loader).map_err(e)?;
    let b = resumed.train_epoch(&loader).map_err(e)?;
    if (a.loss - b.loss).abs() > 1e-10 * a.loss.abs() {
        return Err(format!(
            "after resume: one process {a:?}, distributed {b:?}"
        ));
    }
    Ok(())
}

/// MPI initialised single-threaded: a communicator used from another thread refuses (an
/// error, not an MPI call MPI does not allow), and still works from its own thread.
fn threads(world: &impl mpi::traits::Communicator) -> Check {
    let comm = Arc::new(Communicator::new(world).map_err(e)?);
    if mpi::environment::threading_support() >= mpi::Threading::Serialized {
        return Err("this scenario needs MPI initialised below MPI_THREAD_SERIALIZED".into());
    }
    let other = comm.clone();
    let refused = std::thread::spawn(move || other.barrier())
        .join()
        .map_err(|_| "the thread panicked")?;
    match refused {
        Err(err) if err.to_string().contains("thread") => {}
        other => return Err(format!("another thread's barrier gave {other:?}")),
    }
    let mut x = [1.0f64];
    comm.all_reduce_sum(&mut x).map_err(e)?;
    if x[0] != comm.size() as f64 {
        return Err(format!("sum of ones is {}", x[0]));
    }
    Ok(())
}

/// Rank 1 leaves the training loop early (and waits in MPI_Finalize); rank 0's next
/// gradient average fails with an error after its timeout instead of waiting forever.
fn skip(world: &impl mpi::traits::Communicator) -> Check {
    convnet::init::manual_seed(1);
    let mut model = DataParallel::new(small_cnn::<f32>(false), world).map_err(e)?;
    model.communicator().set_timeout(Duration::from_secs(2));
    if model.rank() == 1 {
        return Ok(());
    }
    let data = images(8, 1);
    let loader = DataLoader::new(&data, LoaderConfig::new(8)).map_err(e)?;
    let batch = loader
        .epoch::<f32>(0)
        .next()
        .ok_or("no batch")?
        .map_err(e)?;
    let start = Instant::now();
    let logits = model.forward(&batch.images).map_err(e)?;
    let (_, g) = CrossEntropyLoss::new()
        .forward(&logits, &batch.labels)
        .map_err(e)?;
    match model.backward(&g) {
        Ok(_) => Err("backward succeeded without the other rank".into()),
        Err(err) => {
            let waited = start.elapsed().as_secs_f64();
            if !(1.5..30.0).contains(&waited) {
                return Err(format!("failed after {waited:.1} s, expected about 2 s"));
            }
            // Reported as this rank's error; the job then ends with MPI_Abort.
            Err(err.to_string())
        }
    }
}

/// Rank 1 dies in the middle of training; the job ends (with an error) instead of hanging.
fn crash(world: &impl mpi::traits::Communicator) -> Check {
    convnet::init::manual_seed(1);
    let mut model = DataParallel::new(small_cnn::<f32>(false), world).map_err(e)?;
    model.communicator().set_timeout(Duration::from_secs(5));
    let data = images(16, 1);
    let loader = DataLoader::new(&data, LoaderConfig::new(4)).map_err(e)?;
    for (step, batch) in loader.epoch::<f32>(0).enumerate() {
        let batch = batch.map_err(e)?;
        if step == 2 && model.rank() == 1 {
            std::process::exit(7);
        }
        let logits = model.forward(&batch.images).map_err(e)?;
        let (_, g) = CrossEntropyLoss::new()
            .forward(&logits, &batch.labels)
            .map_err(e)?;
        model.zero_grad();
        model.backward(&g).map_err(e)?;
    }
    Err("rank 0 finished although rank 1 died".into())
}
