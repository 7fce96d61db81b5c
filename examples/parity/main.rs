//! PyTorch parity runner.
//!
//! ```text
//! cargo run --release --example parity -- tests/parity
//! ```
//!
//! Recomputes every `*.safetensors` case in the folder with convnet and prints one line per
//! case (`PASS`, `FAIL` or `UNSUPPORTED`), then `N passed, M failed`. Exits non-zero if any
//! case did not pass.

mod runner;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: parity DIR   (a folder of PyTorch parity *.safetensors cases)";

/// The one positional argument, the folder of cases; `--help` prints the usage.
fn parse_args() -> Result<PathBuf, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut dirs = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            Value(dir) => dirs.push(PathBuf::from(dir)),
            other => return Err(other.unexpected().to_string()),
        }
    }
    match <[PathBuf; 1]>::try_from(dirs) {
        Ok([dir]) => Ok(dir),
        Err(_) => Err(String::new()),
    }
}

fn main() -> ExitCode {
    let dir = match parse_args() {
        Ok(dir) => dir,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let results = match runner::run_dir(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut passed = 0;
    for (file, outcome) in &results {
        println!("{}", runner::report_line(file, outcome));
        passed += outcome.passed() as usize;
    }
    let failed = results.len() - passed;
    println!("{passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
