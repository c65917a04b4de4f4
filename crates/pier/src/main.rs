//! The `pier` command. Everything it does lives in the library so tests can reach it.

fn main() -> std::process::ExitCode {
    pier::main()
}
