fn main() -> std::process::ExitCode {
    pier_bench_apiserver::main()
}
