//! # The `v100` cost model
//!
//! An analytical model of an NVIDIA V100 (see `donna_sdk::analytical`), calibrated when built
//! on published latencies shipped in `profiles/`: `v100` (or `v100:pytorch-fp32`) models
//! PyTorch eager FP32 and is calibrated on NVIDIA's EfficientNet-B0 figures at batch 1, 64 and
//! 256; `v100:ncnn-vulkan-fp16` models ncnn's Vulkan FP16 backend, calibrated on MobileNetV2
//! and EfficientNet-B0 at batch 1.

use donna_sdk::analytical::AnalyticalProvider;
use donna_sdk::registry::BuiltinPlugin;

static PROVIDER: AnalyticalProvider = AnalyticalProvider {
    name: "v100",
    summary: "NVIDIA V100, analytical, calibrated on published latencies (runtimes: pytorch-fp32, ncnn-vulkan-fp16)",
    profiles: &[include_str!("../profiles/pytorch-fp32.json"), include_str!("../profiles/ncnn-vulkan-fp16.json")],
};

inventory::submit! {
    BuiltinPlugin { devices: &[&PROVIDER], ..BuiltinPlugin::empty("device-v100", env!("CARGO_PKG_VERSION"), "NVIDIA V100 cost model (analytical, calibrated)") }
}

#[cfg(test)]
mod tests;
