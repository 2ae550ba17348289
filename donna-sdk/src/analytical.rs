//! Analytical latency models: each op of a network priced as the larger of its compute time and
//! its memory time, plus a per-op overhead, with efficiencies per op kind, calibrated on
//! published or measured latencies of reference networks.
//!
//! `work(op) = max(MACs / (peak × efficiency[kind] × compute_scale), bytes / (bandwidth × memory_scale))`
//! and `time(op) = max(overhead, work)` where launches overlap execution (asynchronous GPU
//! runtimes such as PyTorch eager on CUDA), `overhead + work` where they do not.
//!
//! The efficiencies per kind are priors (depthwise convs and squeeze-excite use a GPU far
//! worse than dense convs); calibration fits the per-op overhead and the two global scales to
//! the reference figures by least squares on log latency. FLOPs alone cannot work: on these
//! runtimes EfficientNet-B0 runs 1.6-2.1x slower than MobileNetV2 with only 1.3x its MACs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cost::Precision;
use crate::counters::{Op, OpKind};
use crate::error::{Result, SdkError};

/// A measured or published latency of a reference network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// What it is (for messages): `mobilenet_v2`, `efficientnet_b0`, ...
    pub network: String,
    /// An architecture string of a built-in space at `resolution` (e.g. `mobilenet:teacher`).
    pub arch: String,
    /// Input resolution.
    pub resolution: i64,
    /// Batch size.
    pub batch: i64,
    /// Latency in milliseconds.
    pub ms: f64,
    /// Where the figure comes from.
    pub source: String,
}

/// A device profile: hardware figures, priors, fitted parameters and its references.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Device name.
    pub device: String,
    /// Runtime modelled.
    pub runtime: String,
    /// Runtime version the figures are for.
    pub runtime_version: String,
    /// Precision of the runtime.
    pub precision: Precision,
    /// Peak multiply-accumulates per second, in G.
    pub peak_gmacs: f64,
    /// Memory bandwidth in GB/s.
    pub bandwidth_gbs: f64,
    /// Prior fraction of peak each kind of op reaches.
    pub efficiency: BTreeMap<OpKind, f64>,
    /// Whether norms and activations are fused into the op before them (inference runtimes).
    pub fuse_elementwise: bool,
    /// Whether the per-op overhead overlaps the op's execution (asynchronous launches).
    pub overlap_overhead: bool,
    /// Fitted: fixed cost per executed op, microseconds.
    pub overhead_us: f64,
    /// Fitted: scale on all compute efficiencies.
    pub compute_scale: f64,
    /// Fitted: fraction of the bandwidth reached.
    pub memory_scale: f64,
    /// The figures it is calibrated on.
    pub references: Vec<Reference>,
    /// How the profile was made (extrapolations say so here).
    pub notes: String,
}

fn fused(op: &Op, fuse: bool) -> bool {
    fuse && matches!(op.kind, OpKind::Norm | OpKind::Activation)
}

impl Profile {
    /// Parses a profile from JSON, naming `source` in errors.
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let p: Profile = serde_json::from_str(text).map_err(|e| SdkError::Config(format!("{source}: {e}")))?;
        if p.peak_gmacs <= 0.0 || p.bandwidth_gbs <= 0.0 || p.efficiency.values().any(|e| *e <= 0.0 || *e > 1.0) {
            return Err(SdkError::Config(format!(
                "{source}: peak, bandwidth and efficiencies in (0, 1] must be positive"
            )));
        }
        Ok(p)
    }

    /// Latency in ms of a network given by its ops (per sample) at `batch`.
    pub fn latency_ms(&self, ops: &[Op], batch: i64) -> f64 {
        self.latency_with(ops, batch, self.overhead_us, self.compute_scale, self.memory_scale)
    }

    fn latency_with(&self, ops: &[Op], batch: i64, overhead_us: f64, compute_scale: f64, memory_scale: f64) -> f64 {
        let bytes = self.precision.bytes() as f64;
        let peak = self.peak_gmacs * 1e9 * compute_scale;
        let bw = self.bandwidth_gbs * 1e9 * memory_scale;
        let b = batch as f64;
        let mut seconds = 0.0;
        for op in ops.iter().filter(|op| !fused(op, self.fuse_elementwise)) {
            let eff = self.efficiency.get(&op.kind).copied().unwrap_or(0.5);
            let compute = op.macs as f64 * b / (peak * eff);
            let memory = ((op.input_elems + op.output_elems) as f64 * b + op.params as f64) * bytes / bw;
            let work = compute.max(memory);
            seconds += if self.overlap_overhead { work.max(overhead_us * 1e-6) } else { overhead_us * 1e-6 + work };
        }
        seconds * 1e3
    }

    /// Fits overhead, compute scale and memory scale to `refs` (ops per reference) by
    /// minimising the squared log error; returns the largest relative error after fitting.
    pub fn calibrate(&mut self, refs: &[(Vec<Op>, &Reference)]) -> Result<f64> {
        if refs.is_empty() {
            return Err(SdkError::Config("calibration needs at least one reference latency".into()));
        }
        let loss = |p: &[f64; 3]| -> f64 {
            refs.iter()
                .map(|(ops, r)| {
                    let t = self.latency_with(ops, r.batch, p[0].exp(), p[1].exp(), p[2].exp());
                    (t.ln() - r.ms.ln()).powi(2)
                })
                .sum()
        };
        // Coordinate search in log space, from the current values, with shrinking steps.
        let mut p = [self.overhead_us.max(1e-3).ln(), self.compute_scale.ln(), self.memory_scale.ln()];
        let bounds = [(-7.0, 7.0), (-7.0, 2.0), (-7.0, 0.5)];
        let mut step = 1.0;
        let mut best = loss(&p);
        while step > 1e-4 {
            let mut improved = false;
            for i in 0..3 {
                for dir in [-1.0, 1.0] {
                    let mut q = p;
                    q[i] = (q[i] + dir * step).clamp(bounds[i].0, bounds[i].1);
                    let l = loss(&q);
                    if l < best - 1e-15 {
                        best = l;
                        p = q;
                        improved = true;
                    }
                }
            }
            if !improved {
                step /= 2.0;
            }
        }
        self.overhead_us = p[0].exp();
        self.compute_scale = p[1].exp();
        self.memory_scale = p[2].exp();
        Ok(refs.iter().map(|(ops, r)| (self.latency_ms(ops, r.batch) / r.ms - 1.0).abs()).fold(0.0, f64::max))
    }
}

/// An analytical cost model for one device profile, calibrated when built.
pub struct AnalyticalModel {
    profile: Profile,
    /// Largest relative error on the profile's references after calibration.
    pub calibration_error: f64,
}

/// Resolves a reference's architecture (`SPACE:teacher` or a full architecture string) at its
/// resolution and returns its ops.
pub fn reference_ops(r: &Reference) -> Result<Vec<Op>> {
    let (name, body) = r
        .arch
        .split_once(':')
        .ok_or_else(|| SdkError::Config(format!("reference `{}`: `{}` is not SPACE:ARCH", r.network, r.arch)))?;
    let config = crate::SpaceConfig { resolution: r.resolution, ..Default::default() };
    let space = crate::registry::space(name, &config)?;
    let arch = if body == "teacher" { space.teacher() } else { space.parse_arch(&r.arch)? };
    Ok(crate::network::count_network(space.as_ref(), &arch)?.ops().cloned().collect())
}

impl AnalyticalModel {
    /// Calibrates `profile` on its references.
    pub fn new(mut profile: Profile) -> Result<Self> {
        let refs = profile.references.clone();
        let resolved: Vec<(Vec<Op>, &Reference)> =
            refs.iter().map(|r| Ok((reference_ops(r)?, r))).collect::<Result<_>>()?;
        let calibration_error = profile.calibrate(&resolved)?;
        Ok(Self { profile, calibration_error })
    }

    /// The calibrated profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
}

impl crate::cost::CostModel for AnalyticalModel {
    fn info(&self) -> crate::cost::DeviceInfo {
        crate::cost::DeviceInfo {
            device: self.profile.device.clone(),
            runtime: self.profile.runtime.clone(),
            runtime_version: self.profile.runtime_version.clone(),
            method: crate::cost::LatencyMethod::Analytical,
            precision: self.profile.precision,
        }
    }

    fn latency(
        &self,
        space: &dyn crate::SearchSpace,
        archs: &[crate::Architecture],
        query: &crate::cost::CostQuery,
    ) -> Result<Vec<crate::cost::Latency>> {
        if query.precision != self.profile.precision {
            return Err(SdkError::Config(format!(
                "{} ({}) models {:?} only, not {:?}",
                self.profile.device, self.profile.runtime, self.profile.precision, query.precision
            )));
        }
        archs
            .iter()
            .map(|a| {
                let count = crate::network::count_network(space, a)?;
                let ops: Vec<Op> = count.ops().cloned().collect();
                Ok(crate::cost::Latency { ms: self.profile.latency_ms(&ops, query.batch), cv: None })
            })
            .collect()
    }
}

/// A device provider with built-in profiles (JSON), one per runtime; `--device NAME:RUNTIME`
/// picks one, `--device NAME` the first.
pub struct AnalyticalProvider {
    /// Registered name.
    pub name: &'static str,
    /// One line for `donna devices`.
    pub summary: &'static str,
    /// The profiles as JSON texts.
    pub profiles: &'static [&'static str],
}

impl crate::registry::DeviceProvider for AnalyticalProvider {
    fn name(&self) -> &str {
        self.name
    }
    fn summary(&self) -> &str {
        self.summary
    }
    fn build(&self, args: &str) -> Result<Box<dyn crate::cost::CostModel>> {
        Ok(Box::new(AnalyticalModel::new(self.profile(args)?)?))
    }
    fn analytical(&self) -> Option<&AnalyticalProvider> {
        Some(self)
    }
}

impl AnalyticalProvider {
    /// The profile of `runtime` (the first when empty), uncalibrated.
    pub fn profile(&self, runtime: &str) -> Result<Profile> {
        let profiles: Vec<Profile> =
            self.profiles.iter().map(|t| Profile::from_json(t, self.name)).collect::<Result<_>>()?;
        let known: Vec<String> = profiles.iter().map(|p| p.runtime.clone()).collect();
        let found = if runtime.is_empty() {
            profiles.into_iter().next()
        } else {
            profiles.into_iter().find(|p| p.runtime == runtime)
        };
        found.ok_or_else(|| SdkError::Unknown { kind: "runtime", name: runtime.to_owned(), known: known.join(", ") })
    }
}

/// `--device profile:PATH`: an analytical model from a profile file, e.g. one written by
/// `donna cost calibrate` from your own measurements.
pub struct ProfileFileProvider;

impl crate::registry::DeviceProvider for ProfileFileProvider {
    fn name(&self) -> &str {
        "profile"
    }
    fn summary(&self) -> &str {
        "an analytical model from a profile file (profile:PATH), e.g. written by `donna cost calibrate`"
    }
    fn build(&self, args: &str) -> Result<Box<dyn crate::cost::CostModel>> {
        if args.is_empty() {
            return Err(SdkError::Config("profile: give the file, as --device profile:PATH".into()));
        }
        let text = std::fs::read_to_string(args).map_err(|e| SdkError::Io { path: args.to_owned(), source: e })?;
        Ok(Box::new(AnalyticalModel::new(Profile::from_json(&text, args)?)?))
    }
}

static PROFILE_FILE: ProfileFileProvider = ProfileFileProvider;
inventory::submit! {
    crate::registry::BuiltinPlugin {
        devices: &[&PROFILE_FILE],
        ..crate::registry::BuiltinPlugin::empty("sdk", env!("CARGO_PKG_VERSION"), "devices from analytical profile files (profile:PATH)")
    }
}

/// Checks every profile of `provider`: after calibration each reference latency is reproduced
/// within `tolerance` (relative), the `mobilenet` teacher (MobileNetV2) is faster than the
/// `efficientnet` teacher (EfficientNet-B0) at 224 px, and a query in another precision is
/// refused. Device plugins call it from their tests (both spaces must be linked in).
pub fn verify_profiles(provider: &AnalyticalProvider, tolerance: f64) -> std::result::Result<(), String> {
    use crate::registry::DeviceProvider;
    let config = crate::SpaceConfig::default();
    let space = |n: &str| crate::registry::space(n, &config).map_err(|e| e.to_string());
    let (mb, eff) = (space("mobilenet")?, space("efficientnet")?);
    for text in provider.profiles {
        let profile = Profile::from_json(text, provider.name).map_err(|e| e.to_string())?;
        let runtime = profile.runtime.clone();
        let precision = profile.precision;
        let model = AnalyticalModel::new(profile).map_err(|e| e.to_string())?;
        for r in &model.profile().references {
            let ms = model.profile().latency_ms(&reference_ops(r).map_err(|e| e.to_string())?, r.batch);
            if (ms / r.ms - 1.0).abs() >= tolerance {
                return Err(format!("{runtime} {} batch {}: {ms:.2} ms vs {} ms", r.network, r.batch, r.ms));
            }
        }
        let device = provider.build(&runtime).map_err(|e| e.to_string())?;
        let query = crate::cost::CostQuery { batch: 1, precision };
        let at = |s: &dyn crate::SearchSpace, q: &crate::cost::CostQuery| device.latency(s, &[s.teacher()], q);
        let a = at(mb.as_ref(), &query).map_err(|e| e.to_string())?[0].ms;
        let b = at(eff.as_ref(), &query).map_err(|e| e.to_string())?[0].ms;
        if a >= b {
            return Err(format!("{runtime}: MobileNetV2 {a:.2} ms is not below EfficientNet-B0 {b:.2} ms"));
        }
        let other = if precision == Precision::Fp32 { Precision::Fp16 } else { Precision::Fp32 };
        if at(mb.as_ref(), &crate::cost::CostQuery { batch: 1, precision: other }).is_ok() {
            return Err(format!("{runtime}: a {other:?} query was not refused"));
        }
    }
    match provider.build("no-such-runtime") {
        Err(SdkError::Unknown { .. }) => Ok(()),
        _ => Err("an unknown runtime was not refused".into()),
    }
}
