//! The environment seam: the only code in Weir that touches time, randomness,
//! signals or files directly.
//!
//! Everything above this module runs unchanged in two worlds:
//! - built normally, `tokio` is real tokio, [`RealDisk`] writes real files and
//!   the clock is the OS clock;
//! - built with `RUSTFLAGS="--cfg madsim"`, `tokio` is madsim's seeded
//!   single-threaded runtime (simulated TCP, virtual time, node kills), and the
//!   simulator hands each node an in-memory disk with a crash model.
//!
//! **Architecture Invariant:** code outside `src/env/` never calls
//! `std::time::{Instant, SystemTime}::now`, `std::thread::spawn`, `std::fs`,
//! `tokio::fs` or OS randomness. `tests/env_seam.rs` enforces it.

pub mod alloc;
pub mod disk;
pub mod rng;
pub mod signal;
pub mod sim_disk;
pub mod time;

pub use disk::{Disk, DiskFile, RealDisk};
