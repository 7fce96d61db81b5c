//! Train LeNet-5 on the real MNIST shipped in `data/mnist/`.
//!
//! ```text
//! cargo run --release --example mnist
//! cargo run --release --example mnist -- --epochs 3 --optimizer sgd --lr 0.05 --out out/sgd
//! cargo run --release --example mnist -- --resume out/mnist/checkpoint.safetensors
//!
//! # data-parallel over MPI: the global batch (--batch-size) is split over the processes
//! cargo build --release --features mpi --example mnist
//! mpirun -np 2 target/release/examples/mnist --distributed
//! ```
//!
//! Prints the model summary, per-epoch loss / accuracy / seconds, a confusion matrix on the
//! 10,000 test images, and finally `test accuracy: 99.23% (9923/10000)`. Writes to `--out`:
//! the trained weights (`lenet5_mnist.safetensors`, PyTorch names), a checkpoint after every
//! epoch (`checkpoint.safetensors`, atomic), the per-epoch history (`history.csv`) and a plot
//! of loss and accuracy (`training.png`).

mod common;

use convnet::data::{DataLoader, LoaderConfig, Mnist, MNIST_MEAN, MNIST_STD};
use convnet::io::save_weights;
use convnet::model::Replicated;
use convnet::optim::{Adam, AdamConfig, CosineAnnealing, Sgd, SgdConfig};
use convnet::train::{EvalStats, Trainer};
use convnet::zoo::lenet5_modern;
use convnet::Layer;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: mnist [--epochs N] [--batch-size N] [--lr X] [--optimizer adam|sgd] \
[--data DIR] [--out DIR] [--resume CHECKPOINT] [--threads N] [--replicas N] [--seed N] \
[--distributed]";

struct Args {
    epochs: usize,
    batch_size: usize,
    lr: Option<f64>,
    optimizer: String,
    data: PathBuf,
    out: PathBuf,
    resume: Option<PathBuf>,
    threads: Option<usize>,
    replicas: Option<usize>,
    seed: u64,
    distributed: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        epochs: 10,
        batch_size: 64,
        lr: None,
        optimizer: "adam".into(),
        data: PathBuf::from("data/mnist"),
        out: PathBuf::from("out/mnist"),
        resume: None,
        threads: None,
        replicas: None,
        seed: 1,
        distributed: false,
    };
    use lexopt::prelude::*;
    let fail = |e: lexopt::Error| format!("{e}\n{USAGE}");
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(fail)? {
        let flag = match &arg {
            Long(name) => format!("--{name}"),
            _ => return Err(fail(arg.unexpected())),
        };
        match arg {
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            Long("distributed") => {
                if !cfg!(feature = "mpi") {
                    return Err("--distributed needs the `mpi` feature: \
                                cargo build --release --features mpi --example mnist"
                        .into());
                }
                args.distributed = true;
                continue;
            }
            _ => {}
        }
        let value = parser
            .value()
            .map_err(|_| format!("{flag} needs a value\n{USAGE}"))?
            .string()
            .map_err(fail)?;
        let number = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: `{v}` is not a whole number"))
        };
        match flag.as_str() {
            "--epochs" => args.epochs = number(&value)?,
            "--batch-size" => args.batch_size = number(&value)?,
            "--lr" => {
                let lr: f64 = value
                    .parse()
                    .map_err(|_| format!("--lr: `{value}` is not a number"))?;
                if !(lr > 0.0 && lr.is_finite()) {
                    return Err(format!("--lr must be a positive number, got {value}"));
                }
                args.lr = Some(lr);
            }
            "--optimizer" => match value.as_str() {
                "adam" | "sgd" => args.optimizer = value,
                other => {
                    return Err(format!(
                        "--optimizer: unknown optimizer `{other}` (choose adam or sgd)"
                    ))
                }
            },
            "--data" => args.data = PathBuf::from(value),
            "--out" => args.out = PathBuf::from(value),
            "--resume" => args.resume = Some(PathBuf::from(value)),
            "--threads" => match number(&value)? {
                0 => return Err("--threads must be at least 1".into()),
                n if n > MAX_THREADS => {
                    return Err(format!(
                        "--threads {n} is more than {MAX_THREADS}; this machine has {} cores",
                        std::thread::available_parallelism().map_or(1, |c| c.get())
                    ))
                }
                n => args.threads = Some(n),
            },
            "--replicas" => match number(&value)? {
                0 => return Err("--replicas must be at least 1".into()),
                n if n > MAX_THREADS => {
                    return Err(format!("--replicas {n} is more than {MAX_THREADS}"))
                }
                n => args.replicas = Some(n),
            },
            "--seed" => {
                args.seed = value
                    .parse()
                    .map_err(|_| format!("--seed: `{value}` is not a whole number"))?
            }
            other => return Err(format!("unknown flag `{other}`\n{USAGE}")),
        }
    }
    if args.epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    Ok(args)
}

/// The most worker threads `--threads` accepts: more only adds start-up time (each thread
/// has its own stack) and contention, and a million of them took a minute to refuse.
const MAX_THREADS: usize = 256;

/// One line of the per-epoch history.
struct Record {
    epoch: usize,
    train_loss: f64,
    train_acc: f64,
    test_loss: f64,
    test_acc: f64,
    seconds: f64,
}

fn read_history(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let v: Vec<f64> = line.split(',').filter_map(|x| x.parse().ok()).collect();
            (v.len() == 6).then(|| Record {
                epoch: v[0] as usize,
                train_loss: v[1],
                train_acc: v[2],
                test_loss: v[3],
                test_acc: v[4],
                seconds: v[5],
            })
        })
        .collect()
}

fn write_history(path: &Path, history: &[Record]) -> std::io::Result<()> {
    let mut text = String::from("epoch,train_loss,train_acc,test_loss,test_acc,seconds\n");
    for r in history {
        text.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.3}\n",
            r.epoch, r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.seconds
        ));
    }
    std::fs::write(path, text)
}

/// One chart: a train and a test curve over the epochs, each `(epoch, train, test)`.
fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    y_range: std::ops::Range<f64>,
    points: &[(f64, f64, f64)],
    legend: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    let epochs = points.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.5..epochs + 0.5, y_range)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .draw()?;
    for (name, color, test) in [("train", BLUE, false), ("test", RED, true)] {
        let series = points
            .iter()
            .map(|&(e, train, t)| (e, if test { t } else { train }));
        chart
            .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(series.map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    Ok(())
}

/// Loss (left) and accuracy (right) per epoch, as a PNG.
fn plot(path: &Path, history: &[Record]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let loss: Vec<_> = history
        .iter()
        .map(|r| (r.epoch as f64, r.train_loss, r.test_loss))
        .collect();
    let acc: Vec<_> = history
        .iter()
        .map(|r| (r.epoch as f64, r.train_acc, r.test_acc))
        .collect();
    let max_loss = loss.iter().map(|p| p.1.max(p.2)).fold(0.0, f64::max) * 1.1;
    let low_acc = acc.iter().map(|p| p.1.min(p.2)).fold(100.0, f64::min);
    panel(
        &left,
        "loss",
        "cross-entropy",
        0.0..max_loss.max(1e-3),
        &loss,
        SeriesLabelPosition::UpperRight,
    )?;
    panel(
        &right,
        "accuracy (%)",
        "accuracy",
        (low_acc - 0.5).min(99.0)..100.0,
        &acc,
        SeriesLabelPosition::LowerRight,
    )?;
    root.present()?;
    Ok(())
}

fn print_confusion(eval: &EvalStats) {
    println!("confusion matrix (rows: true digit, columns: predicted digit)");
    print!("     ");
    for c in 0..eval.confusion.len() {
        print!("{c:>6}");
    }
    println!();
    for (label, row) in eval.confusion.iter().enumerate() {
        print!("{label:>4} ");
        for &n in row {
            print!("{n:>6}");
        }
        println!();
    }
}

/// Runs the example; with `--distributed`, as one process of an MPI job whose failure ends
/// the whole job (MPI_Abort) rather than leaving the other processes waiting.
fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "mpi")]
    if args.distributed {
        use convnet::distributed::{mpi, DataParallel};
        let universe = mpi::initialize().ok_or("MPI was already initialised")?;
        let world = universe.world();
        let result = train(&args, &mut |model| {
            Ok(Box::new(DataParallel::new(model, &world)?) as Box<dyn Layer<f32>>)
        });
        if let Err(e) = &result {
            eprintln!("error: {e}");
            mpi::traits::Communicator::abort(&world, 1);
        }
        return result;
    }
    // One replica of LeNet-5 per thread, each training on its share of every batch: a step
    // this small gains little from splitting each layer over threads.
    train(&args, &mut |model| {
        let replicas = args.replicas.unwrap_or_else(convnet::num_threads);
        if replicas <= 1 {
            return Ok(Box::new(model) as Box<dyn Layer<f32>>);
        }
        let replicated = Replicated::from_model(model, replicas, || lenet5_modern::<f32>(10))?;
        Ok(Box::new(replicated) as Box<dyn Layer<f32>>)
    })
}

/// Trains with the model `wrap` makes of LeNet-5 (itself, or a data-parallel replica).
fn train(
    args: &Args,
    wrap: &mut dyn FnMut(convnet::model::Sequential<f32>) -> convnet::Result<Box<dyn Layer<f32>>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    // Processes sharing this machine share its cores.
    let local_ranks: usize = [
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .unwrap_or(1);
    let threads = match args.threads {
        Some(n) => Some(n),
        None if args.distributed => Some(
            (std::thread::available_parallelism().map_or(1, |c| c.get()) / local_ranks.max(1))
                .max(1),
        ),
        None => None,
    };
    if let Some(n) = threads {
        convnet::set_num_threads(n)?;
    }
    let mnist = Mnist::load(&args.data)?;
    convnet::init::manual_seed(args.seed);
    let model = wrap(lenet5_modern::<f32>(10)?)?;
    let main = model.collective().is_none_or(|g| g.rank() == 0);
    let world = model.collective().map_or(1, |g| g.size());
    macro_rules! say {
        ($($t:tt)*) => { if main { println!($($t)*); } };
    }
    say!(
        "MNIST: {} training and {} test images from {} ({:.1} s)",
        mnist.train.labels().len(),
        mnist.test.labels().len(),
        args.data.display(),
        start.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    say!("{}", model.summary(&[args.batch_size, 1, 28, 28])?);

    let schedule = CosineAnnealing::new(args.epochs, 0.0)?;
    let lr = args
        .lr
        .unwrap_or(if args.optimizer == "adam" { 2e-3 } else { 0.05 });
    let mut trainer = match args.optimizer.as_str() {
        "adam" => Trainer::new(model, Adam::new(AdamConfig::new(lr))?).with_schedule(schedule),
        _ => Trainer::new(
            model,
            Sgd::new(
                SgdConfig::new(lr)
                    .momentum(0.9)
                    .nesterov(true)
                    .weight_decay(5e-4),
            )?,
        )
        .with_schedule(schedule),
    };
    let history_path = args.out.join("history.csv");
    let mut history = Vec::new();
    if let Some(path) = &args.resume {
        trainer.load_checkpoint(path)?;
        history = read_history(&history_path);
        history.truncate(trainer.epoch());
        say!(
            "resumed from {} after epoch {}",
            path.display(),
            trainer.epoch()
        );
    }
    say!(
        "training: {} optimizer, lr {lr} (cosine to 0), batch {}, {} epochs, shifts of up to 2 pixels, {} threads{}",
        args.optimizer,
        args.batch_size,
        args.epochs,
        convnet::num_threads(),
        if world > 1 {
            format!(" x {world} processes ({} images each per step)", args.batch_size.div_ceil(world))
        } else if args.distributed {
            String::new()
        } else {
            match args.replicas.unwrap_or_else(convnet::num_threads) {
                1 => String::new(),
                n => format!(", {n} replicas of the model (one per thread)"),
            }
        }
    );

    let train = DataLoader::new(
        &mnist.train,
        LoaderConfig::new(args.batch_size)
            .shuffle(args.seed)
            .normalize(MNIST_MEAN, MNIST_STD)
            .max_shift(2),
    )?;
    let test = DataLoader::new(
        &mnist.test,
        LoaderConfig::new(500).normalize(MNIST_MEAN, MNIST_STD),
    )?;
    let checkpoint = args.out.join("checkpoint.safetensors");
    let mut last_eval = None;
    while trainer.epoch() < args.epochs {
        let stats = trainer.train_epoch(&train)?;
        let eval = trainer.evaluate(&test)?;
        say!(
            "epoch {:>2}/{}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | {:.1} s ({:.0} img/s, lr {:.2e})",
            stats.epoch,
            args.epochs,
            stats.loss,
            100.0 * stats.accuracy,
            eval.loss,
            100.0 * eval.top1(),
            stats.seconds + eval.seconds,
            stats.images_per_second(),
            stats.lr
        );
        history.push(Record {
            epoch: stats.epoch,
            train_loss: stats.loss,
            train_acc: 100.0 * stats.accuracy,
            test_loss: eval.loss,
            test_acc: 100.0 * eval.top1(),
            seconds: stats.seconds + eval.seconds,
        });
        trainer.save_checkpoint(&checkpoint)?;
        if main {
            write_history(&history_path, &history)?;
        }
        last_eval = Some(eval);
    }
    let eval = match last_eval {
        Some(e) => e,
        None => trainer.evaluate(&test)?,
    };
    if !main {
        return Ok(());
    }
    print_confusion(&eval);
    let weights = args.out.join("lenet5_mnist.safetensors");
    save_weights(&trainer.model, &weights)?;
    let plot_path = args.out.join("training.png");
    plot(&plot_path, &history)?;
    println!(
        "saved {}, {} and {}; total time {:.1} s",
        weights.display(),
        checkpoint.display(),
        plot_path.display(),
        start.elapsed().as_secs_f64()
    );
    println!(
        "test accuracy: {:.2}% ({}/{})",
        100.0 * eval.top1(),
        eval.correct,
        eval.total
    );
    Ok(())
}

fn main() -> ExitCode {
    common::main_with(parse_args, run)
}
