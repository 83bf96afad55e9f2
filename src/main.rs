//! The `tagbridge` binary: everything lives in the library; see `tagbridge::cli`.

fn main() -> std::process::ExitCode {
    tagbridge::cli::main()
}
