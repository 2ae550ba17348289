//! `classifier`: the end of every network.

use donna_sdk::counters::prod;
use donna_sdk::{FeatureShape, LayerModule, Op, OpKind, Result, SdkError, Settings};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::parts::positive;
use crate::LayerConfig;

/// Global average pool, optional layer norm (ViTs), dropout (training only), linear.
/// Its output shape is `classes x 1 x 1`; the module returns `[batch, classes]` logits.
pub struct Classifier {
    input: FeatureShape,
    classes: i64,
    layer_norm: bool,
    dropout: f64,
}

impl LayerConfig for Classifier {
    fn parse(s: &Settings, input: FeatureShape) -> Result<Self> {
        let layer_norm = match s.name_or("norm", "none")? {
            "none" => false,
            "ln" => true,
            other => return Err(SdkError::Setting(format!("classifier norm `{other}` not in {{none,ln}}"))),
        };
        let dropout = s.float_or("dropout", 0.0)?;
        if !(0.0..1.0).contains(&dropout) {
            return Err(SdkError::Setting(format!("dropout {dropout} not in [0, 1)")));
        }
        Ok(Self { input, classes: positive(s, "classes")?, layer_norm, dropout })
    }
    fn output(&self) -> FeatureShape {
        FeatureShape::new(self.classes, 1, 1)
    }
    fn ops(&self) -> Vec<Op> {
        let c = self.input.channels;
        let mut ops = vec![Op::elementwise(OpKind::Pool, self.input.elems(), c as u64)];
        if self.layer_norm {
            ops.push(Op {
                kind: OpKind::Norm,
                macs: 0,
                params: 2 * c as u64,
                input_elems: c as u64,
                output_elems: c as u64,
            });
        }
        ops.push(Op {
            kind: OpKind::Linear,
            macs: prod(&[c, self.classes]),
            params: prod(&[c, self.classes]).saturating_add(prod(&[self.classes])),
            input_elems: c as u64,
            output_elems: self.classes as u64,
        });
        ops
    }
    fn build(&self, path: &nn::Path) -> Result<LayerModule> {
        let c = self.input.channels;
        let norm = self
            .layer_norm
            .then(|| nn::layer_norm(path / "ln", vec![c], nn::LayerNormConfig { eps: 1e-6, ..Default::default() }));
        Ok(Box::new(ClassifierModule {
            norm,
            fc: nn::linear(path / "fc", c, self.classes, Default::default()),
            dropout: self.dropout,
        }))
    }
}

#[derive(Debug)]
struct ClassifierModule {
    norm: Option<nn::LayerNorm>,
    fc: nn::Linear,
    dropout: f64,
}

impl ModuleT for ClassifierModule {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let pooled = xs.mean_dim([2i64, 3].as_slice(), false, None);
        let pooled = match &self.norm {
            Some(ln) => pooled.apply_t(ln, train),
            None => pooled,
        };
        pooled.dropout(self.dropout, train).apply(&self.fc)
    }
}
