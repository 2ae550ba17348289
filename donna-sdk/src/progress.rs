//! Progress reporting from long stages, independent of how it is shown.
//!
//! Engines report through [`Progress`]; the CLI shows bars with ETA, tests pass [`Silent`].

/// Receives progress of a long-running stage.
pub trait Progress: Send + Sync {
    /// A new phase with `total` units of work (steps, images, units).
    fn start(&self, phase: &str, total: u64);
    /// `units` more are done; `status` is a short live figure (`loss 1.23`).
    fn advance(&self, units: u64, status: &str);
    /// The phase is over; `summary` is kept in the log (one line).
    fn finish(&self, summary: &str);
}

/// Shows nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64, _: &str) {}
    fn finish(&self, _: &str) {}
}
