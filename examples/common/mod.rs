//! What the bundled examples share: how `main` reports errors.

use std::process::ExitCode;

/// Parses the arguments, runs the example, and turns any error into one line on stderr and a
/// non-zero exit: 2 for bad arguments, 1 for a failure while running.
pub fn main_with<A>(
    parse: impl FnOnce() -> Result<A, String>,
    run: impl FnOnce(A) -> Result<(), Box<dyn std::error::Error>>,
) -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
