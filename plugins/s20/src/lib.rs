//! # The `s20` cost model
//!
//! An analytical model of a Samsung Galaxy S20 (Snapdragon 865). No public S20 latency exists
//! for the reference networks, so its profiles are an **extrapolation**: the published
//! Snapdragon 855+ figures (ncnn, 4 big CPU threads; Adreno 640 Vulkan) scaled by 0.8 for the
//! 865's claimed uplift. `s20` (or `s20:cpu-ncnn`) models the CPU, `s20:gpu-ncnn-vulkan` the
//! GPU. Refit with real measurements before trusting absolute numbers.

use donna_sdk::analytical::AnalyticalProvider;
use donna_sdk::registry::BuiltinPlugin;

static PROVIDER: AnalyticalProvider = AnalyticalProvider {
    name: "s20",
    summary: "Samsung S20 (Snapdragon 865), analytical, EXTRAPOLATED from Snapdragon 855+ figures (runtimes: cpu-ncnn, gpu-ncnn-vulkan)",
    profiles: &[include_str!("../profiles/cpu-ncnn.json"), include_str!("../profiles/gpu-ncnn-vulkan.json")],
};

inventory::submit! {
    BuiltinPlugin { devices: &[&PROVIDER], ..BuiltinPlugin::empty("device-s20", env!("CARGO_PKG_VERSION"), "Samsung Galaxy S20 cost model (analytical, calibrated)") }
}

#[cfg(test)]
mod tests;
