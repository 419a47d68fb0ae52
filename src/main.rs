//! The `switchboard` binary: parse the command line and hand over to the library.

/// mimalloc: per-thread free lists suit the many short-lived allocations of a request (rows,
/// response values, futures) far better than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchboard::cli::main()
}
