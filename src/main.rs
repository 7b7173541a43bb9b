//! `auths`: the command line. Thin: parses arguments, calls the library, turns errors into
//! messages that say what to do next.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
