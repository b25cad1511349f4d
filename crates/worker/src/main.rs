//! The stock `cohort-worker` binary; see the `cohort_worker` library docs.

fn main() -> std::process::ExitCode {
    cohort_worker::main()
}
