//! `cargo xtask conformance`: prints the fixture × core/async/blocking matrix.

use std::process::ExitCode;

fn main() -> ExitCode {
    let rows = class_oauth_conformance::run_all();
    print!("{}", class_oauth_conformance::render(&rows));
    if rows.iter().all(class_oauth_conformance::Row::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
