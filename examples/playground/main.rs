//! A playground in the browser: draw a digit, watch LeNet-5 read it.
//!
//! ```text
//! cargo run --release --example playground                 # http://127.0.0.1:8000/
//! cargo run --release --example playground -- --port 8080 --weights my_lenet.safetensors
//! ```
//!
//! Serves one page (HTML, JavaScript and CSS compiled into the binary: no build step, no CDN,
//! it works offline) on the loopback interface only, unless `--host` says otherwise. On the
//! page you draw a digit with the mouse or a finger, and see, live:
//!
//! - the prediction and the ten class probabilities,
//! - the feature maps of every convolution and pooling layer of LeNet-5 (`lenet5_modern`),
//!   with each layer's output shape and the course formula `O = (N - F + 2P)/S + 1` filled in,
//! - the saliency map (`convnet::explain::saliency`) over the 28x28 the network was given.
//!
//! A second tab shows the summary and parameter count of any zoo model.
//!
//! The weights are read from `--weights` (default `out/mnist/lenet5_mnist.safetensors`, where
//! the `mnist` example writes them). When that file does not exist the playground first trains
//! LeNet-5 on the bundled MNIST (`--data`, default `data/mnist`) for `--steps` steps (default
//! two epochs, 1,876 batches of 64: about 99% test accuracy, under a minute in release on an
//! idle machine), showing progress in the terminal and on the page, and saves the weights
//! there (atomically) for the next start.
//!
//! The JSON API the page uses:
//!
//! ```text
//! GET  /api/status          {"state": "training" | "ready" | "failed", ...}
//! POST /api/predict         {"pixels": [784 numbers in [0, 1], row by row, white ink on black]}
//!                           -> prediction, probabilities, input, layers (feature maps), saliency
//! GET  /api/zoo             the zoo's models
//! GET  /api/zoo/<name>      {"name", "summary", "total_params", ...}
//! ```
//!
//! Bad requests (junk JSON, wrong sizes, bodies over 64 KiB, unknown models or paths, wrong
//! methods) get a 4xx answer with a one-line message.

#[path = "../common/mod.rs"]
mod common;
mod net;
mod server;
mod training;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod webdriver;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: playground [--port N] [--host ADDR] [--weights FILE] [--data DIR] \
[--steps N]";

/// Where the `mnist` example writes its weights; the playground reads (or writes) the same.
pub const DEFAULT_WEIGHTS: &str = "out/mnist/lenet5_mnist.safetensors";

/// The command line.
#[derive(Debug)]
pub struct Args {
    /// The address to listen on (loopback by default).
    pub addr: SocketAddr,
    /// The trained LeNet-5; trained and written here when missing.
    pub weights: PathBuf,
    /// The MNIST folder used when training.
    pub data: PathBuf,
    /// Training steps (batches of 64) when there are no weights yet.
    pub steps: usize,
}

fn parse_args() -> Result<Args, String> {
    parse_from(std::env::args_os().skip(1))
}

/// Parses the flags (without the program name).
pub fn parse_from(
    flags: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut args = Args {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8000),
        weights: PathBuf::from(DEFAULT_WEIGHTS),
        data: PathBuf::from("data/mnist"),
        steps: training::DEFAULT_STEPS,
    };
    let mut parser = lexopt::Parser::from_args(flags);
    let fail = |e: lexopt::Error| format!("{e}\n{USAGE}");
    while let Some(arg) = parser.next().map_err(fail)? {
        match arg {
            Long("port") => {
                let v = text(&mut parser)?;
                let port: u16 = v
                    .parse()
                    .map_err(|_| format!("--port: `{v}` is not a port number (0 to 65535)"))?;
                args.addr.set_port(port);
            }
            Long("host") => {
                let v = text(&mut parser)?;
                let ip: IpAddr = v
                    .parse()
                    .map_err(|_| format!("--host: `{v}` is not an IP address"))?;
                args.addr.set_ip(ip);
            }
            Long("weights") => args.weights = PathBuf::from(text(&mut parser)?),
            Long("data") => args.data = PathBuf::from(text(&mut parser)?),
            Long("steps") => {
                let v = text(&mut parser)?;
                args.steps = match v.parse::<usize>() {
                    Ok(n) if (1..=100_000).contains(&n) => n,
                    _ => return Err(format!("--steps: `{v}` is not a number from 1 to 100000")),
                };
            }
            Short('h') | Long("help") => return Err(USAGE.into()),
            other => return Err(fail(other.unexpected())),
        }
    }
    Ok(args)
}

/// The value of the flag just read, as text.
fn text(parser: &mut lexopt::Parser) -> Result<String, String> {
    use lexopt::ValueExt;
    let fail = |e: lexopt::Error| format!("{e}\n{USAGE}");
    parser.value().map_err(fail)?.string().map_err(fail)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if !args.addr.ip().is_loopback() {
        eprintln!(
            "warning: listening on {}, not loopback: other machines can reach the playground",
            args.addr.ip()
        );
    }
    let running = server::start(&args)?;
    println!("playground: open http://{}/", running.addr);
    running.wait();
    Ok(())
}

fn main() -> ExitCode {
    common::main_with(parse_args, run)
}
