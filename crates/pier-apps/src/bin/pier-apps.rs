//! `pier-apps <app> [args]`: runs one built-in app, exactly as `pier app <app> [args]` does.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((app, rest)) => pier_apps::run(app, rest),
        None => {
            eprintln!("usage: pier-apps <app> [args...] (apps: {})", pier_apps::APPS.join(", "));
            ExitCode::from(2)
        }
    }
}
