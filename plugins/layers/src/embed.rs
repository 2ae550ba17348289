//! `patch_embed`: the stem of vision transformers.

use donna_sdk::{FeatureShape, LayerModule, Op, OpKind, Result, SdkError, Settings};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::parts::{positive, ConvGeom};
use crate::LayerConfig;

/// Non-overlapping `patch x patch` projection to `out` channels plus a learned position
/// embedding (one vector per output position; no class token: heads pool the positions).
pub struct PatchEmbed {
    geom: ConvGeom,
    input: FeatureShape,
}

impl LayerConfig for PatchEmbed {
    fn parse(s: &Settings, input: FeatureShape) -> Result<Self> {
        let patch = positive(s, "patch")?;
        if input.height % patch != 0 || input.width % patch != 0 {
            return Err(SdkError::Config(format!("patch {patch} does not divide input {input}")));
        }
        let geom =
            ConvGeom { same_padding: false, ..ConvGeom::new(input.channels, positive(s, "out")?, patch, patch, 1) }
                .with_bias();
        geom.check(input)?;
        Ok(Self { geom, input })
    }
    fn output(&self) -> FeatureShape {
        self.geom.output(self.input)
    }
    fn ops(&self) -> Vec<Op> {
        let out = self.output();
        vec![
            self.geom.op(self.input),
            Op {
                kind: OpKind::Elementwise,
                macs: 0,
                params: out.elems(),
                input_elems: out.elems().saturating_mul(2),
                output_elems: out.elems(),
            },
        ]
    }
    fn build(&self, path: &nn::Path) -> Result<LayerModule> {
        let out = self.output();
        let pos =
            path.var("pos", &[1, out.channels, out.height, out.width], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        Ok(Box::new(PatchEmbedModule { proj: self.geom.build(&(path / "proj"))?, pos }))
    }
}

#[derive(Debug)]
struct PatchEmbedModule {
    proj: nn::Conv2D,
    pos: Tensor,
}

impl ModuleT for PatchEmbedModule {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.proj) + &self.pos
    }
}
