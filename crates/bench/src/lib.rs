//! Rudder's benchmarks and fault-injection harnesses, run by `scripts/bench NAME`.
//!
//! Owns: measuring Rudder against its peer in the same run (a real etcd for the store and for the API server, …) and
//! printing each figure for both with the ratio; crash-safety rounds with real process deaths.
//! Must not touch: any component's internals; everything goes through public APIs.

pub mod api;
pub mod cluster;
pub mod crash;
pub mod failover;
pub mod net;
pub mod pods;
pub mod store;

/// Prints a benchmark's summary table: the first row is the header; the three figure columns
/// (ours, the peer's, their ratio) are right-aligned.
pub fn print_table(rows: &[[&str; 5]]) {
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (a, b, c, d) = (width(0), width(1), width(2), width(3));
    for (n, r) in rows.iter().enumerate() {
        println!(
            "{:<a$} | {:>b$} | {:>c$} | {:>d$} | {}",
            r[0], r[1], r[2], r[3], r[4]
        );
        if n == 0 {
            let dash = |w: usize| "-".repeat(w);
            println!(
                "{}-|-{}-|-{}-|-{}-|-{}",
                dash(a),
                dash(b),
                dash(c),
                dash(d),
                dash(16)
            );
        }
    }
}
