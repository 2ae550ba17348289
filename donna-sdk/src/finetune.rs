//! Finetuning stitched architectures end to end with knowledge distillation from the teacher.
//!
//! The loss is `(1 - kd_weight) · CE(labels) + kd_weight · T² · KL(teacher_T ‖ student_T)`,
//! with `T` the temperature. Every architecture of a run is finetuned on the same sequence of
//! augmented batches ([`KdStream`]): the stream and the teacher's logits on it are computed once
//! and shared, so twenty finetunes pay for one teacher pass, and two architectures differ only
//! by what they are, not by the batches they happened to see.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::{Kind, Reduction, Tensor};

use crate::data::{Augment, Loader, LoaderConfig, Split};
use crate::error::{Result, SdkError};
use crate::network::Network;
use crate::optim::{Cosine, Optimizer, OptimizerConfig, OptimizerKind};
use crate::progress::Progress;
use crate::rng::SplitMix64;
use crate::train::TrainData;

/// How an architecture is finetuned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// Training steps.
    pub steps: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate (SGD with Nesterov momentum, cosine schedule, 5% warm-up).
    pub lr: f64,
    /// Momentum.
    pub momentum: f64,
    /// Weight decay on weights.
    pub weight_decay: f64,
    /// Distillation temperature.
    pub temperature: f64,
    /// Weight of the distillation term (the cross-entropy gets `1 - kd_weight`).
    pub kd_weight: f64,
    /// Validation images the accuracy is measured on (`None`: all).
    pub val_images: Option<usize>,
}

impl FinetuneConfig {
    /// Checks the values for sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SdkError::Config(m));
        if self.steps == 0 || self.batch_size == 0 {
            return bad("finetuning needs at least one step of at least one image".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("finetune learning rate {} must be positive", self.lr));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!("distillation temperature {} must be positive", self.temperature));
        }
        if !(0.0..=1.0).contains(&self.kd_weight) {
            return bad(format!("distillation weight {} must be in [0, 1]", self.kd_weight));
        }
        Ok(())
    }
}

/// A fixed sequence of augmented training batches with the teacher's logits on them.
pub struct KdStream {
    batches: Vec<(Tensor, Tensor, Tensor)>,
}

impl KdStream {
    /// The first `steps` batches of `batch_size` augmented training images of `data`, in the
    /// order given by `seed`, with `teacher`'s logits (evaluation mode).
    pub fn new(
        teacher: &Network,
        data: &TrainData,
        steps: usize,
        batch_size: usize,
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let train_len = data.dataset.info().train_len;
        let per_epoch = train_len / batch_size.max(1);
        if per_epoch == 0 {
            return Err(SdkError::Config(format!("{train_len} training images do not fill one batch of {batch_size}")));
        }
        progress.start("teacher logits", steps as u64);
        let mut batches = Vec::with_capacity(steps);
        let mut epoch = 0u64;
        let stream_seed = SplitMix64::derive(seed, "kd-stream").next_u64();
        while batches.len() < steps {
            let loader = Loader::new(
                data.dataset.clone(),
                Split::Train,
                LoaderConfig {
                    batch_size,
                    resolution: data.resolution,
                    augment: Some(Augment { crop_padding: 4, flip: true }),
                    shuffle: true,
                    drop_last: true,
                    seed: stream_seed,
                    epoch,
                    limit: Some((steps - batches.len()).min(per_epoch) * batch_size),
                    prefetch: 3,
                    device: data.device,
                },
                data.normalization.clone(),
            );
            for batch in loader {
                let batch = batch?;
                let logits = tch::no_grad(|| teacher.forward_t(&batch.images, false));
                batches.push((batch.images, batch.labels, logits));
                progress.advance(1, "");
            }
            epoch += 1;
        }
        progress.finish(&format!("teacher logits on {} batches of {batch_size}", batches.len()));
        Ok(Self { batches })
    }

    /// Number of batches.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether the stream is empty.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

/// The distillation loss of `logits` against the teacher's, with the labels.
pub fn kd_loss(logits: &Tensor, labels: &Tensor, teacher_logits: &Tensor, temperature: f64, kd_weight: f64) -> Tensor {
    let ce = logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0);
    if kd_weight == 0.0 {
        return ce;
    }
    let log_p = (logits / temperature).log_softmax(-1, Kind::Float);
    let log_q = (teacher_logits / temperature).log_softmax(-1, Kind::Float);
    // KL(q ‖ p) averaged over the batch, scaled by T² so its gradients keep their size.
    let kl = (log_q.exp() * (&log_q - &log_p)).sum(Kind::Float) / logits.size()[0] as f64;
    ce * (1.0 - kd_weight) + kl * (kd_weight * temperature * temperature)
}

/// What a finetune did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneOutcome {
    /// Mean loss over the first tenth of the steps.
    pub first_loss: f64,
    /// Mean loss over the last tenth of the steps.
    pub last_loss: f64,
    /// Wall time of the training steps.
    pub seconds: f64,
}

/// Finetunes `net` (variables in `vs`) on the first `config.steps` batches of `stream`.
/// Dropout and other randomness are seeded by `seed`.
pub fn finetune(
    vs: &VarStore,
    net: &Network,
    stream: &KdStream,
    config: &FinetuneConfig,
    seed: u64,
    phase: &str,
    progress: &dyn Progress,
) -> Result<FinetuneOutcome> {
    config.validate()?;
    if stream.len() < config.steps {
        return Err(SdkError::Config(format!(
            "the distillation stream has {} batches, the finetune needs {}",
            stream.len(),
            config.steps
        )));
    }
    tch::manual_seed(SplitMix64::derive(seed, "finetune").next_u64() as i64);
    let mut opt = Optimizer::new(
        vs,
        OptimizerConfig { kind: OptimizerKind::Sgd, momentum: config.momentum, weight_decay: config.weight_decay },
    );
    let schedule = Cosine { base: config.lr, warmup: (config.steps / 20) as u64, total: config.steps as u64 };
    let tail = (config.steps / 10).max(1);
    let (mut first, mut last) = (Vec::new(), Vec::new());
    progress.start(phase, config.steps as u64);
    let start = Instant::now();
    for (step, (images, labels, teacher_logits)) in stream.batches.iter().take(config.steps).enumerate() {
        opt.zero_grad();
        let logits = net.forward_t(images, true);
        let loss = kd_loss(&logits, labels, teacher_logits, config.temperature, config.kd_weight);
        loss.backward();
        opt.step(schedule.at(step as u64));
        let l = loss.double_value(&[]);
        if !l.is_finite() {
            return Err(SdkError::Config(format!(
                "{phase}: finetuning diverged at step {step}; lower the learning rate"
            )));
        }
        if step < tail {
            first.push(l);
        }
        if step + tail >= config.steps {
            last.push(l);
        }
        progress.advance(1, &format!("loss {l:.3}"));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let outcome =
        FinetuneOutcome { first_loss: mean(&first), last_loss: mean(&last), seconds: start.elapsed().as_secs_f64() };
    progress.finish(&format!(
        "{phase}: loss {:.3} -> {:.3} in {:.1} s",
        outcome.first_loss, outcome.last_loss, outcome.seconds
    ));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kd_loss_is_cross_entropy_at_weight_zero_and_zero_kl_on_the_teacher_itself() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, -1.0, 0.5, 0.5, 0.0]).view([2, 3]);
        let labels = Tensor::from_slice(&[0i64, 2]);
        let ce = logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0).double_value(&[]);
        assert!((kd_loss(&logits, &labels, &logits, 4.0, 0.0).double_value(&[]) - ce).abs() < 1e-6);
        // KL of a distribution with itself is 0, so only the CE half remains.
        assert!((kd_loss(&logits, &labels, &logits, 4.0, 0.5).double_value(&[]) - 0.5 * ce).abs() < 1e-6);
        // By hand: one sample, student logits (0,0) vs teacher (ln 3, 0) at T=1: q=(3/4,1/4),
        // p=(1/2,1/2); KL = 3/4 ln(3/2) + 1/4 ln(1/2).
        let s = Tensor::from_slice(&[0.0f32, 0.0]).view([1, 2]);
        let t = Tensor::from_slice(&[3f32.ln(), 0.0]).view([1, 2]);
        let kl = 0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln();
        let got = kd_loss(&s, &Tensor::from_slice(&[0i64]), &t, 1.0, 1.0).double_value(&[]);
        assert!((got - kl).abs() < 1e-6, "{got} vs {kl}");
    }

    #[test]
    fn bad_settings_are_refused() {
        let ok = FinetuneConfig {
            steps: 10,
            batch_size: 8,
            lr: 0.02,
            momentum: 0.9,
            weight_decay: 0.0,
            temperature: 4.0,
            kd_weight: 0.5,
            val_images: None,
        };
        assert!(ok.validate().is_ok());
        assert!(FinetuneConfig { kd_weight: 1.5, ..ok.clone() }.validate().unwrap_err().to_string().contains("[0, 1]"));
        assert!(FinetuneConfig { temperature: 0.0, ..ok.clone() }.validate().is_err());
        assert!(FinetuneConfig { steps: 0, ..ok }.validate().is_err());
    }
}
