//! keepalived.conf: parser, typed model, validation (module under construction).

use std::{path::Path, process::ExitCode};

/// `xvrrpd check -f FILE [--dump-json]` (and keepalived's `-t -f FILE`).
pub fn check_command(path: &Path, dump_json: bool) -> ExitCode {
    let _ = (path, dump_json);
    eprintln!("xvrrpd check: not implemented yet");
    ExitCode::from(2)
}
