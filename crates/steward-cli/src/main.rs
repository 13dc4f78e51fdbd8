//! The `steward` command: inspect, check and repair an assistant's memory file.

use clap::Parser;

/// Keeps a realtime assistant's memory healthy.
#[derive(Debug, Parser)]
#[command(name = "steward", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
