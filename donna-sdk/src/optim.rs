//! Optimizers whose whole state can be saved and restored, so training resumes exactly.
//!
//! tch's built-in optimizers keep their momentum buffers out of reach; these keep them as
//! named tensors that go into the training checkpoint with the weights.

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::error::{Result, SdkError};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with Nesterov momentum and L2 weight decay.
    Sgd,
    /// Adam with decoupled weight decay.
    Adamw,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sgd" => Ok(Self::Sgd),
            "adamw" => Ok(Self::Adamw),
            _ => Err(format!("optimizer `{s}` not in {{sgd, adamw}}")),
        }
    }
}

/// The optimizer a search space's networks train best with, replacing a preset's default
/// (transformers, for one, barely move under the CNN recipe of SGD at lr 0.1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerHint {
    /// Update rule.
    pub kind: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
}

/// Hyper-parameters other than the learning rate (which the schedule gives per step).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// Update rule.
    pub kind: OptimizerKind,
    /// SGD momentum, or Adam's beta1.
    pub momentum: f64,
    /// Weight decay (not applied to 1-D parameters: norms and biases).
    pub weight_decay: f64,
}

struct Param {
    name: String,
    value: Tensor,
    decay: bool,
    slots: Vec<Tensor>,
}

/// An optimizer over the trainable variables of a var store.
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<Param>,
    steps: i64,
}

impl Optimizer {
    /// Optimizes the trainable variables of `vs`, in name order.
    pub fn new(vs: &VarStore, config: OptimizerConfig) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = match config.kind {
            OptimizerKind::Sgd => 1,
            OptimizerKind::Adamw => 2,
        };
        let params = vars
            .into_iter()
            .map(|(name, value)| {
                let decay = value.dim() > 1;
                let s = (0..slots).map(|_| value.zeros_like()).collect();
                Param { name, value, decay, slots: s }
            })
            .collect();
        Self { config, params, steps: 0 }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.value.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let c = self.config;
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.value.grad();
                if !g.defined() {
                    continue;
                }
                match c.kind {
                    OptimizerKind::Sgd => {
                        let g = if p.decay && c.weight_decay > 0.0 { &g + &p.value * c.weight_decay } else { g };
                        let buf = &mut p.slots[0];
                        let _ = buf.g_mul_scalar_(c.momentum).g_add_(&g);
                        let update = &g + &*buf * c.momentum;
                        let _ = p.value.g_add_(&(update * -lr));
                    }
                    OptimizerKind::Adamw => {
                        let (b1, b2, eps) = (c.momentum, 0.999, 1e-8);
                        if p.decay && c.weight_decay > 0.0 {
                            let _ = p.value.g_mul_scalar_(1.0 - lr * c.weight_decay);
                        }
                        let _ = p.slots[0].g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                        let _ = p.slots[1].g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
                        let bc1 = 1.0 - b1.powi(self.steps as i32);
                        let bc2 = 1.0 - b2.powi(self.steps as i32);
                        let denom = (&p.slots[1] / bc2).sqrt() + eps;
                        let _ = p.value.g_add_(&(&p.slots[0] / denom * (-lr / bc1)));
                    }
                }
            }
        });
    }

    /// The state as named tensors (`optim.<param>.<slot>` and `optim.steps`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("optim.steps".to_owned(), Tensor::from_slice(&[self.steps]))];
        for p in &self.params {
            for (i, s) in p.slots.iter().enumerate() {
                out.push((format!("optim.{}.{i}", p.name), s.shallow_clone()));
            }
        }
        out
    }

    /// Restores a state written by [`Optimizer::state`].
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], source: &str) -> Result<()> {
        let get = |name: &str| {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| SdkError::Config(format!("{source}: optimizer state lacks `{name}`")))
        };
        let steps = get("optim.steps")?;
        self.steps = steps.int64_value(&[0]);
        tch::no_grad(|| -> Result<()> {
            for p in &mut self.params {
                for (i, s) in p.slots.iter_mut().enumerate() {
                    let t = get(&format!("optim.{}.{i}", p.name))?;
                    if t.size() != s.size() {
                        return Err(SdkError::Config(format!(
                            "{source}: optimizer state for `{}` has the wrong shape",
                            p.name
                        )));
                    }
                    s.copy_(&t.to_device(s.device()).to_kind(Kind::Float));
                }
            }
            Ok(())
        })
    }
}

/// Cosine learning-rate schedule with linear warm-up, by step.
#[derive(Clone, Copy, Debug)]
pub struct Cosine {
    /// Peak learning rate.
    pub base: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Total steps.
    pub total: u64,
}

impl Cosine {
    /// The learning rate at `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.base * (step + 1) as f64 / self.warmup as f64;
        }
        let t = (step - self.warmup) as f64 / (self.total.saturating_sub(self.warmup)).max(1) as f64;
        0.5 * self.base * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module};
    use tch::Device;

    #[test]
    fn cosine_warms_up_then_decays_to_zero() {
        let s = Cosine { base: 0.1, warmup: 10, total: 110 };
        assert!((s.at(0) - 0.01).abs() < 1e-12);
        assert!((s.at(9) - 0.1).abs() < 1e-12);
        assert!((s.at(60) - 0.05).abs() < 1e-12);
        assert!(s.at(110).abs() < 1e-12);
    }

    fn fit(kind: OptimizerKind, steps: usize) -> (f64, VarStore, Optimizer) {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "lin", 4, 1, Default::default());
        let mut opt = Optimizer::new(&vs, OptimizerConfig { kind, momentum: 0.9, weight_decay: 1e-4 });
        let x = Tensor::randn([64, 4], (Kind::Float, Device::Cpu));
        let y = x.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
        let mut loss = 0.0;
        for _ in 0..steps {
            opt.zero_grad();
            let l = (lin.forward(&x) - &y).square().mean(Kind::Float);
            l.backward();
            opt.step(0.02);
            loss = f64::try_from(l).unwrap();
        }
        (loss, vs, opt)
    }

    #[test]
    fn both_rules_reduce_a_regression_loss() {
        for kind in [OptimizerKind::Sgd, OptimizerKind::Adamw] {
            let (first, ..) = fit(kind, 1);
            let (last, ..) = fit(kind, 200);
            assert!(last < first * 0.1, "{kind:?}: {first} -> {last}");
        }
    }

    #[test]
    fn state_round_trips() {
        let (_, _, opt) = fit(OptimizerKind::Adamw, 5);
        let state = opt.state();
        let (_, _, mut other) = fit(OptimizerKind::Adamw, 1);
        other.load_state(&state, "test").unwrap();
        for ((a, x), (b, y)) in state.iter().zip(other.state()) {
            assert_eq!(*a, b);
            assert!(x.equal(&y), "{a}");
        }
        assert!(other.load_state(&state[1..], "ckpt").unwrap_err().to_string().contains("ckpt: optimizer state lacks"));
    }
}
