//! `rudder-bench NAME`: see `scripts/bench` and docs/benchmarks.md.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rudder_bench::crash;

#[derive(Parser)]
#[command(
    name = "rudder-bench",
    about = "Rudder's benchmarks and crash-safety harnesses"
)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Kill a writing process with SIGKILL at random moments and check every acknowledged write
    /// survives (the embedded store).
    StoreCrash {
        #[arg(long, default_value_t = 100)]
        rounds: usize,
        /// Store directory (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The writing child of `store-crash`.
    #[command(hide = true)]
    StoreCrashChild { dir: PathBuf },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Bench::StoreCrash { rounds, dir } => {
            let (dir, _tmp) = crash::work_dir(dir)?;
            let exe = std::env::current_exe()?;
            let started = std::time::Instant::now();
            let report = crash::run(&exe, &dir, rounds, |round, r| {
                println!(
                    "round {:>3}: {} writes acknowledged so far, revision {}",
                    round + 1,
                    r.acknowledged,
                    r.final_revision
                );
            })?;
            println!(
                "store-crash: {} rounds, {} acknowledged writes all present after SIGKILL \
                 ({} checked at their own revision), final revision {}, {:.1} s",
                report.rounds,
                report.acknowledged,
                report.checked_at_revision,
                report.final_revision,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Bench::StoreCrashChild { dir } => crash::child(&dir),
    }
}
