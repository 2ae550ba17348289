//! The noise-to-signal ratio (NSR): DONNA's block quality metric and distillation loss.
//!
//! For a teacher output `y` and a student output `ŷ` with channels `c`:
//! `NSR = mean_c ( Σ (y_c − ŷ_c)² / Σ (y_c − mean(y_c))² )`, sums over batch and positions.
//! Normalising each channel by the teacher's own variance makes channels of different scale
//! count equally, and makes the figure comparable across blocks.

use tch::{Kind, Tensor};

/// The NSR of one batch, differentiable (the training loss).
pub fn nsr_loss(student: &Tensor, teacher: &Tensor) -> Tensor {
    let dims = [0i64, 2, 3];
    let err = (student - teacher).square().mean_dim(dims.as_slice(), false, Kind::Float);
    let var = teacher.var_dim(dims.as_slice(), false, false);
    (err / (var + 1e-8)).mean(Kind::Float)
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
                (sse / n / (var + 1e-8)).mean(Kind::Double).double_value(&[])
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
    fn channels_count_equally_whatever_their_scale_and_batches_add_up() {
        let t = Tensor::randn([8, 3, 4, 4], (Kind::Float, Device::Cpu));
        let scale = Tensor::from_slice(&[1f32, 100.0, 0.01]).view([1, 3, 1, 1]);
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
