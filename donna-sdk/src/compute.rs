//! Which device libtorch computes on.
//!
//! The linker keeps only the libtorch libraries whose symbols a binary uses, and donna uses no
//! CUDA symbol directly, so `libtorch_cuda.so` would never be loaded and CUDA would look
//! absent. [`compute_device`] loads it explicitly when present (from the rpath the build sets),
//! then picks the first GPU if libtorch sees one.

use std::sync::OnceLock;

use tch::Device;

/// Loads libtorch's CUDA backend if this libtorch has a usable one; returns whether it did.
pub fn load_cuda_backend() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        // SAFETY: loading libtorch's own CUDA library runs its static initialisers, which
        // register the CUDA backend with the already loaded libtorch_cpu; nothing else runs.
        match unsafe { libloading::Library::new("libtorch_cuda.so") } {
            Ok(lib) => {
                // Keep it loaded for the life of the process.
                std::mem::forget(lib);
                true
            }
            Err(_) => false,
        }
    })
}

/// The device to compute on: `DONNA_DEVICE` (`cpu`, `cuda`, `cuda:N`) if set, else the first
/// CUDA device when libtorch sees one, else the CPU.
pub fn compute_device() -> Device {
    load_cuda_backend();
    match std::env::var("DONNA_DEVICE").ok().as_deref() {
        Some("cpu") => Device::Cpu,
        Some(s) if s.starts_with("cuda") => {
            let n = s.strip_prefix("cuda:").and_then(|n| n.parse().ok()).unwrap_or(0);
            Device::Cuda(n)
        }
        _ => Device::cuda_if_available(),
    }
}
