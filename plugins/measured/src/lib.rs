//! # The `cpu` and `cuda` cost models: latency measured here with libtorch
//!
//! Each architecture is built with random weights (channels-last, evaluation mode), warmed up,
//! then timed in rounds until two rounds agree (see [`timing`]): the latency is the fastest
//! round's median, the spread the coefficient of variation of every timed run. The thread
//! count is fixed (`threads=N`, default: libtorch's) so measurements are comparable. `cuda`
//! synchronises the device after each run and is refused where libtorch sees no GPU.
//!
//! [`lut`] builds a per-block lookup table from the same measurements, to show what such
//! tables miss (`donna cost lut-error`).
//!
//! `--device cpu[:threads=N,warmup=W,repeats=R,rounds=M,max_rounds=X,tolerance=P]`,
//! `--device cuda[:...]`.
#![deny(missing_docs)]

pub mod lut;
pub mod timing;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use donna_sdk::compute::load_cuda_backend;
use donna_sdk::cost::{CostModel, CostQuery, DeviceInfo, Latency, LatencyMethod, Precision};
use donna_sdk::layer::FeatureShape;
use donna_sdk::network::{build_network, to_channels_last, use_channels_last};
use donna_sdk::registry::{BuiltinPlugin, DeviceProvider};
use donna_sdk::{Architecture, Result, SdkError, SearchSpace};
use tch::nn::{ModuleT, Path, VarStore};
use tch::{Device, Kind, Tensor};

pub use timing::MeasureConfig;

/// The libtorch version this build links (tch 0.26 refuses any other at build time).
pub const LIBTORCH_VERSION: &str = "2.13.0";

/// How many bytes of weights may be built at once to time networks interleaved: a whole
/// generation usually fits, and measuring it in one group keeps every network in the same
/// allocator state (see docs/cost-models.md: a second group measured after a first one ran
/// 10-20% slower).
const INTERLEAVED_BYTES: u64 = 1 << 30;

/// A cost model that times networks on a libtorch device.
pub struct Measured {
    device: Device,
    config: MeasureConfig,
}

/// A module built on the measuring device with its variables and an input to run it on.
pub struct Workload {
    _vs: VarStore,
    module: Box<dyn ModuleT>,
    input: Tensor,
}

/// A libtorch failure (out of memory, a bad shape) as an error instead of a panic: tch's
/// infallible calls panic, and a measuring server must survive whatever it is sent.
fn torch_guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("panic");
        let first = msg.lines().next().unwrap_or(msg);
        Err(SdkError::Torch(tch::TchError::Torch(format!("{what}: {first}"))))
    })
}

impl Measured {
    /// A model for `device` with `config`.
    pub fn new(device: Device, config: MeasureConfig) -> Self {
        Self { device, config }
    }

    /// `cpu[:SETTINGS]` or `cuda[:SETTINGS]` (the `--device` forms of this crate's models).
    pub fn from_spec(spec: &str) -> Result<Self> {
        let (name, args) = spec.split_once(':').unwrap_or((spec, ""));
        match name {
            "cpu" => Ok(Self::new(Device::Cpu, MeasureConfig::parse(args)?)),
            "cuda" => {
                load_cuda_backend();
                if !tch::Cuda::is_available() {
                    return Err(SdkError::Config(
                        "cuda: libtorch sees no CUDA device (CPU build or no GPU); use --device cpu".into(),
                    ));
                }
                Ok(Self::new(Device::Cuda(0), MeasureConfig::parse(args)?))
            }
            _ => {
                Err(SdkError::Config(format!("`{spec}` is not a measured device (cpu[:SETTINGS] or cuda[:SETTINGS])")))
            }
        }
    }

    /// The libtorch device measured on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// How measurements are taken.
    pub fn config(&self) -> &MeasureConfig {
        &self.config
    }

    fn sync(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// Builds a module with `build` (given a fresh variable store's root) and a random input of
    /// `shape` at `batch`, and runs it once, so that libtorch failures show up here as errors.
    pub fn workload(
        &self,
        shape: FeatureShape,
        batch: i64,
        build: impl FnOnce(&Path) -> Result<Box<dyn ModuleT>>,
    ) -> Result<Workload> {
        torch_guard("building or running the network", || {
            let vs = VarStore::new(self.device);
            let module = build(&vs.root())?;
            use_channels_last(&vs);
            let input = to_channels_last(&Tensor::f_randn(shape.batch(batch), (Kind::Float, self.device))?);
            let _ = tch::no_grad(|| module.forward_t(&input, false));
            Ok(Workload { _vs: vs, module, input })
        })
    }

    /// Times `workloads` interleaved (see [`timing`]); `None` for those the deadline left
    /// unmeasured.
    pub fn time(&self, workloads: &[&Workload], deadline: Option<Instant>) -> Vec<Option<Latency>> {
        tch::set_num_threads(self.config.threads);
        let _no_grad = tch::no_grad_guard();
        let mut runs: Vec<_> = workloads
            .iter()
            .map(|w| {
                move || {
                    let _ = w.module.forward_t(&w.input, false);
                    self.sync();
                }
            })
            .collect();
        let mut refs: Vec<&mut dyn FnMut()> = runs.iter_mut().map(|r| r as &mut dyn FnMut()).collect();
        timing::time_interleaved(&self.config, &mut refs, deadline)
    }

    /// The latency of `arch` at `batch`.
    pub fn measure(&self, space: &dyn SearchSpace, arch: &Architecture, batch: i64) -> Result<Latency> {
        self.measure_many(space, std::slice::from_ref(arch), batch, None).remove(0)
    }

    /// Latencies of `archs` at `batch`, timed interleaved, each with its own error. Those not
    /// measured by `deadline` fail with a message saying so.
    pub fn measure_many(
        &self,
        space: &dyn SearchSpace,
        archs: &[Architecture],
        batch: i64,
        deadline: Option<Instant>,
    ) -> Vec<Result<Latency>> {
        tch::set_num_threads(self.config.threads);
        let late = || SdkError::Config("not measured: the time limit was reached first".to_owned());
        let mut out = Vec::with_capacity(archs.len());
        for chunk in interleaved_groups(space, archs) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                out.extend(chunk.iter().map(|_| Err(late())));
                continue;
            }
            let built: Vec<Result<Workload>> = chunk
                .iter()
                .map(|a| {
                    self.workload(space.input_shape(), batch, |root| {
                        Ok(Box::new(build_network(space, a, root)?) as Box<dyn ModuleT>)
                    })
                })
                .collect();
            let ok: Vec<&Workload> = built.iter().flatten().collect();
            let mut timed = self.time(&ok, deadline).into_iter();
            for b in built {
                out.push(match b {
                    Err(e) => Err(e),
                    Ok(_) => timed.next().flatten().ok_or_else(late),
                });
            }
        }
        out
    }
}

impl CostModel for Measured {
    fn info(&self) -> DeviceInfo {
        let (device, detail) = match self.device {
            Device::Cuda(i) => (format!("cuda:{i}"), "CUDA".to_owned()),
            _ => ("cpu".to_owned(), format!("{} threads", self.config.threads)),
        };
        DeviceInfo {
            device,
            runtime: format!("libtorch eager, {detail}"),
            runtime_version: LIBTORCH_VERSION.to_owned(),
            method: LatencyMethod::Measured,
            precision: Precision::Fp32,
        }
    }

    fn latency(&self, space: &dyn SearchSpace, archs: &[Architecture], query: &CostQuery) -> Result<Vec<Latency>> {
        if query.precision != Precision::Fp32 {
            return Err(SdkError::Config(format!("measured latency is FP32 only, not {:?}", query.precision)));
        }
        let results = self.measure_many(space, archs, query.batch, None);
        results.into_iter().zip(archs).map(|(r, a)| r.map_err(|e| naming_arch(e, &space.format_arch(a)))).collect()
    }
}

/// `archs` cut into consecutive groups of at most [`INTERLEAVED_BYTES`] of FP32 weights (at
/// least one network each).
fn interleaved_groups<'a>(space: &dyn SearchSpace, archs: &'a [Architecture]) -> Vec<&'a [Architecture]> {
    let bytes = |a: &Architecture| donna_sdk::network::count_network(space, a).map_or(0, |c| 4 * c.total.params);
    let mut groups = Vec::new();
    let (mut start, mut total) = (0, 0);
    for (i, a) in archs.iter().enumerate() {
        let b = bytes(a);
        if i > start && total + b > INTERLEAVED_BYTES {
            groups.push(&archs[start..i]);
            (start, total) = (i, 0);
        }
        total += b;
    }
    if start < archs.len() {
        groups.push(&archs[start..]);
    }
    groups
}

/// `e` with the architecture it concerns in front of its message, of the same kind.
fn naming_arch(e: SdkError, arch: &str) -> SdkError {
    match e {
        SdkError::Arch(m) => SdkError::Arch(format!("{arch}: {m}")),
        SdkError::Config(m) => SdkError::Config(format!("{arch}: {m}")),
        SdkError::Setting(m) => SdkError::Setting(format!("{arch}: {m}")),
        SdkError::Torch(t) => SdkError::Torch(tch::TchError::Torch(format!("{arch}: {t}"))),
        other => other,
    }
}

struct Cpu;

impl DeviceProvider for Cpu {
    fn name(&self) -> &str {
        "cpu"
    }
    fn summary(&self) -> &str {
        "this machine's CPU, measured with libtorch (fastest of agreeing round medians) [cpu:threads=N,warmup=W,repeats=R,rounds=M,max_rounds=X,tolerance=PCT]"
    }
    fn build(&self, args: &str) -> Result<Box<dyn CostModel>> {
        Ok(Box::new(Measured::from_spec(&format!("cpu:{args}"))?))
    }
}

struct Cuda;

impl DeviceProvider for Cuda {
    fn name(&self) -> &str {
        "cuda"
    }
    fn summary(&self) -> &str {
        "the first CUDA GPU libtorch sees, measured (needs the CUDA build: DONNA_TORCH=cuda)"
    }
    fn build(&self, args: &str) -> Result<Box<dyn CostModel>> {
        Ok(Box::new(Measured::from_spec(&format!("cuda:{args}"))?))
    }
}

static CPU: Cpu = Cpu;
static CUDA: Cuda = Cuda;
inventory::submit! {
    BuiltinPlugin { devices: &[&CPU, &CUDA], ..BuiltinPlugin::empty("device-measured", env!("CARGO_PKG_VERSION"), "latency measured here with libtorch (cpu, cuda)") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use donna_layers as _;
    use donna_sdk::{registry, SpaceConfig};
    use donna_space_mobilenet as _;

    #[test]
    fn cpu_measures_a_positive_median_with_its_spread_and_bigger_nets_take_longer() {
        let space = registry::space(
            "mobilenet",
            &SpaceConfig { resolution: 32, width_mult: 0.25, num_classes: 10, in_channels: 3 },
        )
        .unwrap();
        let device = registry::device("cpu:warmup=2,repeats=5").unwrap();
        let small = donna_sdk::Architecture {
            space: "mobilenet".into(),
            blocks: space.blocks().iter().map(|b| b.options[0].clone()).collect(),
        };
        let lat = device
            .latency(space.as_ref(), &[small, space.teacher()], &CostQuery { batch: 8, precision: Precision::Fp32 })
            .unwrap();
        assert!(lat.iter().all(|l| l.ms > 0.0 && l.cv.is_some()), "{lat:?}");
        assert!(lat[0].ms < lat[1].ms, "3 layers vs 16: {lat:?}");
        assert_eq!(device.info().method, LatencyMethod::Measured);
    }

    #[test]
    fn bad_settings_and_missing_gpus_are_refused() {
        assert!(registry::device("cpu:threads=0").is_err());
        assert!(Measured::from_spec("tpu").err().unwrap().to_string().contains("not a measured device"));
        if !tch::Cuda::is_available() {
            assert!(registry::device("cuda").err().unwrap().to_string().contains("no CUDA device"));
        }
    }
}
