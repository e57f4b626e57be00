//! `rudder-bench NAME`: see `scripts/bench` and docs/benchmarks.md.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rudder_bench::{crash, store};

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
    /// The embedded store against a real etcd: sequential put latency, throughput with
    /// concurrent writers, range read, watch delivery latency, RSS (docs/benchmarks.md).
    Store {
        /// A tenth of every size (a smoke run; the docs report the full sizes).
        #[arg(long)]
        quick: bool,
        /// Sequential puts timed one by one.
        #[arg(long)]
        seq_puts: Option<usize>,
        /// Concurrent writers (throughput and load phases).
        #[arg(long)]
        writers: Option<usize>,
        /// Puts in the throughput phase.
        #[arg(long)]
        writes: Option<usize>,
        /// Keys read by the full range read.
        #[arg(long)]
        range_keys: Option<usize>,
        /// Timed range reads (the median is reported).
        #[arg(long)]
        range_reads: Option<usize>,
        /// Puts whose watch delivery is timed.
        #[arg(long)]
        watch_puts: Option<usize>,
        /// Keys written before RSS is read.
        #[arg(long)]
        rss_keys: Option<usize>,
        /// Value size in bytes.
        #[arg(long)]
        value_size: Option<usize>,
    },
    /// The child of `store` that measures the embedded store's RSS in its own process.
    #[command(hide = true)]
    StoreRssChild {
        dir: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        keys: usize,
        #[arg(long, default_value_t = 64)]
        writers: usize,
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        /// Only open (recover) the existing store and report.
        #[arg(long)]
        reopen_only: bool,
    },
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
        Bench::Store {
            quick,
            seq_puts,
            writers,
            writes,
            range_keys,
            range_reads,
            watch_puts,
            rss_keys,
            value_size,
        } => {
            let mut sizes = if quick {
                store::Sizes::quick()
            } else {
                store::Sizes::full()
            };
            let set = |field: &mut usize, v: Option<usize>| {
                if let Some(v) = v {
                    *field = v.max(1);
                }
            };
            set(&mut sizes.seq_puts, seq_puts);
            set(&mut sizes.writers, writers);
            set(&mut sizes.writes, writes);
            set(&mut sizes.range_keys, range_keys);
            set(&mut sizes.range_reads, range_reads);
            set(&mut sizes.watch_puts, watch_puts);
            set(&mut sizes.rss_keys, rss_keys);
            set(&mut sizes.value_size, value_size);
            sizes.value_size = sizes.value_size.max(8);
            store::run(&std::env::current_exe()?, &sizes)
        }
        Bench::StoreRssChild {
            dir,
            keys,
            writers,
            value_size,
            reopen_only,
        } => store::rss_child(&dir, keys, writers.max(1), value_size, reopen_only),
    }
}
