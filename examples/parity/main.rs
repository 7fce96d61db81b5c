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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match args.as_slice() {
        [dir] => PathBuf::from(dir),
        _ => {
            eprintln!("usage: parity DIR   (a folder of PyTorch parity *.safetensors cases)");
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
