fn main() -> std::process::ExitCode {
    certd::cli::main()
}
