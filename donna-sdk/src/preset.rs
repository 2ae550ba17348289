//! Presets: named bundles of every size and schedule the pipeline uses.
//!
//! `quick` is sized so that the whole pipeline runs in about ten minutes on a 2-core CPU with
//! the embedded dataset; `full` uses the reference width and longer schedules. Every value can
//! be overridden by a flag of the stage that uses it.

use serde::{Deserialize, Serialize};

use crate::accuracy::PredictorConfig;
use crate::data::Augment;
use crate::distill::DistillConfig;
use crate::error::{Result, SdkError};
use crate::finetune::FinetuneConfig;
use crate::optim::OptimizerKind;
use crate::space::SearchSpace;
use crate::train::TrainConfig;

/// A named set of defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    /// `quick` or `full`.
    pub name: String,
    /// Input resolution of the space.
    pub resolution: i64,
    /// Width multiplier of the space.
    pub width_mult: f64,
    /// How the teacher is trained.
    pub teacher: TrainConfig,
    /// How block options are distilled.
    pub distill: DistillConfig,
    /// How many architectures the accuracy predictor is fitted and judged on, and how they
    /// are finetuned.
    pub predictor: PredictorConfig,
    /// How each device is searched.
    pub search: SearchPreset,
    /// How the models found are finetuned before export.
    pub final_finetune: FinetuneConfig,
}

/// Search defaults of a preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPreset {
    /// Searcher name.
    pub searcher: String,
    /// Individuals per generation.
    pub population: usize,
    /// Generations after the first.
    pub generations: usize,
    /// Models of the front finetuned and exported (spread over its latency range).
    pub top: usize,
}

impl Preset {
    /// The teacher schedule for `space`: the preset's, with the space's optimizer if it names
    /// one (flags given by the user apply on top).
    pub fn teacher_for(&self, space: &dyn SearchSpace) -> TrainConfig {
        let mut c = self.teacher.clone();
        if let Some(h) = space.optimizer_hint() {
            c.optimizer = h.kind;
            c.lr = h.lr;
            c.weight_decay = h.weight_decay;
        }
        c
    }
}

/// The names of the presets.
pub const PRESETS: [&str; 2] = ["quick", "full"];

/// The preset called `name`.
pub fn preset(name: &str) -> Result<Preset> {
    let teacher = TrainConfig {
        epochs: 6,
        batch_size: 128,
        optimizer: OptimizerKind::Sgd,
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        label_smoothing: 0.1,
        warmup_epochs: 0.5,
        augment: Augment { crop_padding: 4, flip: true },
        train_limit: Some(25_000),
        val_limit: Some(5_000),
    };
    let distill = DistillConfig {
        steps: 250,
        batch_size: 128,
        lr: 2e-3,
        weight_decay: 0.0,
        val_images: 2_000,
        options_per_pass: 8,
        max_options: Some(8),
    };
    let predictor = PredictorConfig {
        fit: 14,
        holdout: 6,
        finetune: FinetuneConfig {
            steps: 100,
            batch_size: 128,
            lr: 0.02,
            momentum: 0.9,
            weight_decay: 5e-5,
            temperature: 4.0,
            kd_weight: 0.5,
            val_images: Some(2_000),
        },
        folds: None,
    };
    match name {
        "quick" => Ok(Preset {
            name: name.into(),
            resolution: 32,
            width_mult: 0.25,
            teacher,
            distill,
            final_finetune: FinetuneConfig { steps: 200, val_images: Some(5_000), ..predictor.finetune.clone() },
            predictor,
            search: SearchPreset { searcher: "nsga2".into(), population: 24, generations: 8, top: 2 },
        }),
        "full" => Ok(Preset {
            name: name.into(),
            resolution: 32,
            width_mult: 1.0,
            teacher: TrainConfig { epochs: 40, warmup_epochs: 1.0, train_limit: None, val_limit: None, ..teacher },
            distill: DistillConfig {
                steps: 2_000,
                val_images: 10_000,
                options_per_pass: 16,
                max_options: None,
                ..distill
            },
            predictor: PredictorConfig {
                fit: 30,
                holdout: 10,
                finetune: FinetuneConfig { steps: 600, val_images: None, ..predictor.finetune.clone() },
                folds: None,
            },
            search: SearchPreset { searcher: "nsga2".into(), population: 100, generations: 50, top: 4 },
            final_finetune: FinetuneConfig { steps: 4_000, val_images: None, ..predictor.finetune },
        }),
        other => Err(SdkError::Unknown { kind: "preset", name: other.into(), known: PRESETS.join(", ") }),
    }
}
