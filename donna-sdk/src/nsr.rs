//! The noise-to-signal ratio (NSR): DONNA's block quality metric and distillation loss.
//!
//! For a teacher output `y` and a student output `ŷ` with channels `c`:
//! `NSR = mean_c ( Σ (y_c − ŷ_c)² / Σ (y_c − mean(y_c))² )`, sums over batch and positions.
//! Normalising each channel by the teacher's own variance makes channels of different scale
//! count equally, and makes the figure comparable across blocks.
//!
//! One guard, not in the paper: a channel whose teacher variance is below 10% of the channels.
//! average is normalised by that 10% instead. Trained teachers have such near-dead channels
//! (weight decay shrinks the ones the rest of the network ignores); divided by ~0 they made a
//! block's NSR hundreds of times larger than any other's and ranked its options by noise.
//! Measured on the quick mobilenet teacher: 5 of the last block's 80 output channels have less
//! than 1% of the mean variance (the smallest 1e-5 of it), and its options' NSR was 40 to 946
//! without the guard, 1.1 to 4.6 with a 1% floor.

use tch::{Kind, Tensor};

/// The NSR of one batch, differentiable (the training loss).
pub fn nsr_loss(student: &Tensor, teacher: &Tensor) -> Tensor {
    let dims = [0i64, 2, 3];
    let err = (student - teacher).square().mean_dim(dims.as_slice(), false, Kind::Float);
    let var = teacher.var_dim(dims.as_slice(), false, false);
    (err / floored(&var)).mean(Kind::Float)
}

/// Names the metric's definition; distilled units made under another are redone, not reused.
pub const METRIC: &str = "nsr/per-channel/floor=0.1";

/// Fraction of the mean channel variance below which a channel's variance is raised to it.
pub const VARIANCE_FLOOR: f64 = 0.1;

fn floored(var: &Tensor) -> Tensor {
    var.clamp_min_tensor(&(var.mean(var.kind()) * VARIANCE_FLOOR + 1e-12))
}

/// Accumulates per-channel sums over many batches for an exact held-out NSR.
#[derive(Default)]
pub struct NsrAccumulator {
    sse: Option<Tensor>,
    sum: Option<Tensor>,
    sumsq: Option<Tensor>,
    count: f64,
}

impl NsrAccumulator {
    /// A fresh accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch (no gradient is kept).
    pub fn add(&mut self, student: &Tensor, teacher: &Tensor) {
        let dims = [0i64, 2, 3];
        let t = teacher.to_kind(Kind::Double);
        let sse = (student.to_kind(Kind::Double) - &t).square().sum_dim_intlist(dims.as_slice(), false, Kind::Double);
        let sum = t.sum_dim_intlist(dims.as_slice(), false, Kind::Double);
        let sumsq = t.square().sum_dim_intlist(dims.as_slice(), false, Kind::Double);
        let size = teacher.size();
        self.count += (size[0] * size[2] * size[3]) as f64;
        let acc = |slot: &mut Option<Tensor>, v: Tensor| {
            *slot = Some(match slot.take() {
                Some(s) => s + v,
                None => v,
            })
        };
        acc(&mut self.sse, sse);
        acc(&mut self.sum, sum);
        acc(&mut self.sumsq, sumsq);
    }

    /// The NSR over everything added (NaN when nothing was).
    pub fn value(&self) -> f64 {
        match (&self.sse, &self.sum, &self.sumsq) {
            (Some(sse), Some(sum), Some(sumsq)) => {
                let n = self.count;
                let var = sumsq / n - (sum / n).square();
                (sse / n / floored(&var)).mean(Kind::Double).double_value(&[])
            }
            _ => f64::NAN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn nsr_matches_a_hand_computed_value() {
        // One channel, teacher [1, 3] (mean 2, variance 1), student [1, 1]: error 4/2 = 2 -> NSR 2.
        let t = Tensor::from_slice(&[1f32, 3.0]).view([2, 1, 1, 1]);
        let s = Tensor::from_slice(&[1f32, 1.0]).view([2, 1, 1, 1]);
        assert!((nsr_loss(&s, &t).double_value(&[]) - 2.0).abs() < 1e-5);
        let mut acc = NsrAccumulator::new();
        acc.add(&s, &t);
        assert!((acc.value() - 2.0).abs() < 1e-6);
    }

    #[test]
    fn a_dead_teacher_channel_is_normalised_by_the_floor() {
        // Channel 0 varies (variance 1), channel 1 is constant: its squared error 0.01 is
        // divided by 10% of the mean variance (0.5 * 0.1), not by ~0.
        let t = Tensor::from_slice(&[1f32, 5.0, 3.0, 5.0]).view([2, 2, 1, 1]);
        let s = Tensor::from_slice(&[1f32, 5.1, 3.0, 5.1]).view([2, 2, 1, 1]);
        let v = nsr_loss(&s, &t).double_value(&[]);
        assert!((v - 0.5 * (0.01 / 0.05)).abs() < 1e-3, "{v}");
        let mut acc = NsrAccumulator::new();
        acc.add(&s, &t);
        assert!((acc.value() - v).abs() < 1e-3);
    }

    #[test]
    fn channels_count_equally_whatever_their_scale_and_batches_add_up() {
        let t = Tensor::randn([8, 3, 4, 4], (Kind::Float, Device::Cpu));
        let scale = Tensor::from_slice(&[1f32, 2.0, 0.6]).view([1, 3, 1, 1]);
        let noise = Tensor::randn([8, 3, 4, 4], (Kind::Float, Device::Cpu)) * 0.1;
        let (ts, ss) = (&t * &scale, (&t + &noise) * &scale);
        let per = nsr_loss(&ss, &ts).double_value(&[]);
        assert!((per - 0.01).abs() < 0.005, "{per}");
        let mut acc = NsrAccumulator::new();
        acc.add(&ss.narrow(0, 0, 4), &ts.narrow(0, 0, 4));
        acc.add(&ss.narrow(0, 4, 4), &ts.narrow(0, 4, 4));
        let mut whole = NsrAccumulator::new();
        whole.add(&ss, &ts);
        assert!((acc.value() - whole.value()).abs() < 1e-9);
        assert!(NsrAccumulator::new().value().is_nan());
    }
}
