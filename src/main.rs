//! The `ferrite` binary: see `cli` for what it accepts.

// mimalloc: allocation-heavy paths (reply building, config reload) run faster than on glibc's
// allocator, and it returns memory to the OS more promptly.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(ferrite::cli::main(std::env::args_os().collect()));
}
