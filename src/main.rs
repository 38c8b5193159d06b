//! The `tandem` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    tandem::cli::main()
}
