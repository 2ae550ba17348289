//! # The `cpu` and `cuda` cost models: latency measured here with libtorch
//!
//! Each architecture is built with random weights (channels-last, evaluation mode), run
//! `warmup` times, then timed `repeats` times on a fixed batch; the latency is the median and
//! the spread its coefficient of variation. The thread count is fixed (`threads=N`, default:
//! libtorch's) so measurements are comparable. `cuda` synchronises the device around each
//! timed run and is refused where libtorch sees no GPU.
//!
//! `--device cpu[:threads=N,warmup=W,repeats=R]`, `--device cuda[:...]`.
#![deny(missing_docs)]

use std::time::Instant;

use donna_sdk::compute::load_cuda_backend;
use donna_sdk::cost::{CostModel, CostQuery, DeviceInfo, Latency, LatencyMethod, Precision};
use donna_sdk::network::{build_network, to_channels_last, use_channels_last};
use donna_sdk::registry::{DeviceProvider, DeviceRegistration};
use donna_sdk::{Architecture, Result, SdkError, SearchSpace};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// The libtorch version this build links (tch 0.26 refuses any other at build time).
pub const LIBTORCH_VERSION: &str = "2.13.0";

/// How measurements are taken.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasureConfig {
    /// libtorch intra-op threads.
    pub threads: i32,
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs.
    pub repeats: usize,
}

impl MeasureConfig {
    /// Parses `threads=N,warmup=W,repeats=R` (all optional).
    pub fn parse(args: &str) -> Result<Self> {
        let mut c = Self { threads: tch::get_num_threads(), warmup: 5, repeats: 20 };
        for part in args.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| SdkError::Config(format!("`{part}` is not key=value (threads, warmup, repeats)")))?;
            let n: usize = v.parse().map_err(|_| SdkError::Config(format!("{k}={v} is not a positive integer")))?;
            match (k, n) {
                (_, 0) if k != "warmup" => return Err(SdkError::Config(format!("{k} must be at least 1"))),
                ("threads", n) if n <= 256 => c.threads = n as i32,
                ("warmup", n) => c.warmup = n,
                ("repeats", n) if n <= 10_000 => c.repeats = n,
                _ => {
                    return Err(SdkError::Config(format!(
                        "unknown or out-of-range setting `{part}` (threads<=256, warmup, repeats<=10000)"
                    )))
                }
            }
        }
        Ok(c)
    }
}

/// A cost model that times networks on a libtorch device.
pub struct Measured {
    device: Device,
    config: MeasureConfig,
}

impl Measured {
    /// A model for `device` with `config`.
    pub fn new(device: Device, config: MeasureConfig) -> Self {
        Self { device, config }
    }

    fn sync(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// Median and coefficient of variation of `repeats` timed runs of `arch` at `batch`.
    pub fn measure(&self, space: &dyn SearchSpace, arch: &Architecture, batch: i64) -> Result<Latency> {
        tch::set_num_threads(self.config.threads);
        let vs = VarStore::new(self.device);
        let net = build_network(space, arch, &vs.root())?;
        use_channels_last(&vs);
        let shape = space.input_shape().batch(batch);
        let x = to_channels_last(&Tensor::randn(shape, (Kind::Float, self.device)));
        let mut times = Vec::with_capacity(self.config.repeats);
        tch::no_grad(|| {
            for _ in 0..self.config.warmup {
                let _ = net.forward_t(&x, false);
            }
            self.sync();
            for _ in 0..self.config.repeats {
                let t = Instant::now();
                let _ = net.forward_t(&x, false);
                self.sync();
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        });
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let sd = (times.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / times.len() as f64).sqrt();
        Ok(Latency { ms: median, cv: Some(sd / mean) })
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
        archs.iter().map(|a| self.measure(space, a, query.batch)).collect()
    }
}

struct Cpu;

impl DeviceProvider for Cpu {
    fn name(&self) -> &str {
        "cpu"
    }
    fn summary(&self) -> &str {
        "this machine's CPU, measured with libtorch (median of repeated runs) [cpu:threads=N,warmup=W,repeats=R]"
    }
    fn build(&self, args: &str) -> Result<Box<dyn CostModel>> {
        Ok(Box::new(Measured::new(Device::Cpu, MeasureConfig::parse(args)?)))
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
        load_cuda_backend();
        if !tch::Cuda::is_available() {
            return Err(SdkError::Config(
                "cuda: libtorch sees no CUDA device (CPU build or no GPU); use --device cpu".into(),
            ));
        }
        Ok(Box::new(Measured::new(Device::Cuda(0), MeasureConfig::parse(args)?)))
    }
}

static CPU: Cpu = Cpu;
static CUDA: Cuda = Cuda;
inventory::submit! { DeviceRegistration(&CPU) }
inventory::submit! { DeviceRegistration(&CUDA) }

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
        assert!(MeasureConfig::parse("threads=0").is_err());
        assert!(MeasureConfig::parse("repeats=x").unwrap_err().to_string().contains("repeats=x"));
        assert!(MeasureConfig::parse("speed=3").unwrap_err().to_string().contains("speed=3"));
        assert_eq!(MeasureConfig::parse("warmup=0,repeats=3").unwrap().repeats, 3);
        if !tch::Cuda::is_available() {
            assert!(registry::device("cuda").err().unwrap().to_string().contains("no CUDA device"));
        }
    }
}
