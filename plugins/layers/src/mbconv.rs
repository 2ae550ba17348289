//! Inverted residuals: `mbconv` (MobileNetV2, EfficientNet) and `fused_mbconv` (EfficientNetV2).

use donna_sdk::{FeatureShape, LayerModule, Op, Result, SdkError, Settings};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::parts::{positive, positive_or, residual_op, Act, ConvBn, ConvGeom, SqueezeExcite};
use crate::LayerConfig;

/// Settings shared by both inverted residuals.
struct Common {
    input: FeatureShape,
    out: i64,
    k: i64,
    expansion: i64,
    stride: i64,
    se: bool,
    act: Act,
}

impl Common {
    fn parse(s: &Settings, input: FeatureShape) -> Result<Self> {
        let c = Self {
            input,
            out: positive(s, "out")?,
            k: positive(s, "k")?,
            expansion: positive(s, "e")?,
            stride: positive_or(s, "stride", 1)?,
            se: s.flag_or("se", false)?,
            act: Act::from_settings(s, "act", "relu")?,
        };
        if c.k % 2 == 0 {
            return Err(SdkError::Setting(format!("kernel {} must be odd", c.k)));
        }
        Ok(c)
    }

    fn hidden(&self) -> i64 {
        self.input.channels.saturating_mul(self.expansion)
    }

    fn residual(&self) -> bool {
        self.stride == 1 && self.input.channels == self.out
    }

    fn output(&self) -> FeatureShape {
        self.input.conv_output(self.out, self.k, self.stride)
    }
}

/// The built module of either inverted residual: a list of units and the residual flag.
#[derive(Debug)]
struct InvertedResidual {
    units: Vec<Box<dyn ModuleT + Send>>,
    residual: bool,
}

impl ModuleT for InvertedResidual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = self.units.iter().fold(xs.shallow_clone(), |x, u| u.forward_t(&x, train));
        if self.residual {
            y + xs
        } else {
            y
        }
    }
}

/// MBConv: 1x1 expand (skipped at expansion 1), kxk depthwise, squeeze-excite, 1x1 project.
pub struct MbConv(Common);

impl MbConv {
    fn units(&self) -> (Vec<(ConvGeom, Act, &'static str)>, FeatureShape) {
        let c = &self.0;
        let hidden = c.hidden();
        let mut units = Vec::new();
        if c.expansion != 1 {
            units.push((ConvGeom::pointwise(c.input.channels, hidden), c.act, "expand"));
        }
        let dw = ConvGeom::new(hidden, hidden, c.k, c.stride, hidden);
        units.push((dw, c.act, "dw"));
        let mid = c.input.conv_output(hidden, c.k, c.stride);
        (units, mid)
    }
}

impl LayerConfig for MbConv {
    fn parse(s: &Settings, input: FeatureShape) -> Result<Self> {
        Ok(MbConv(Common::parse(s, input)?))
    }
    fn output(&self) -> FeatureShape {
        self.0.output()
    }
    fn ops(&self) -> Vec<Op> {
        let c = &self.0;
        let (units, mid) = self.units();
        let mut shape = c.input;
        let mut ops = Vec::new();
        for (g, act, _) in &units {
            ops.extend(ConvBn::ops(g, *act, shape));
            shape = g.output(shape);
        }
        if c.se {
            ops.extend(SqueezeExcite::ops(mid, SqueezeExcite::squeeze(c.input.channels), c.act));
        }
        ops.extend(ConvBn::ops(&ConvGeom::pointwise(c.hidden(), c.out), Act::None, mid));
        if c.residual() {
            ops.push(residual_op(c.output()));
        }
        ops
    }
    fn build(&self, path: &nn::Path) -> Result<LayerModule> {
        let c = &self.0;
        let (units, _) = self.units();
        let mut built: Vec<Box<dyn ModuleT + Send>> = Vec::new();
        for (g, act, name) in &units {
            built.push(Box::new(ConvBn::build(&(path / *name), g, *act)?));
        }
        if c.se {
            built.push(Box::new(SqueezeExcite::build(
                &(path / "se"),
                c.hidden(),
                SqueezeExcite::squeeze(c.input.channels),
                c.act,
            )?));
        }
        built.push(Box::new(ConvBn::build(&(path / "project"), &ConvGeom::pointwise(c.hidden(), c.out), Act::None)?));
        Ok(Box::new(InvertedResidual { units: built, residual: c.residual() }))
    }
}

/// Fused MBConv: kxk expand (or a single kxk conv at expansion 1), squeeze-excite, 1x1 project.
pub struct FusedMbConv(Common);

impl FusedMbConv {
    /// The kxk conv, its output shape, and the projection if any.
    fn geoms(&self) -> (ConvGeom, FeatureShape, Option<ConvGeom>) {
        let c = &self.0;
        if c.expansion == 1 {
            let g = ConvGeom::new(c.input.channels, c.out, c.k, c.stride, 1);
            (g, g.output(c.input), None)
        } else {
            let g = ConvGeom::new(c.input.channels, c.hidden(), c.k, c.stride, 1);
            (g, g.output(c.input), Some(ConvGeom::pointwise(c.hidden(), c.out)))
        }
    }
}

impl LayerConfig for FusedMbConv {
    fn parse(s: &Settings, input: FeatureShape) -> Result<Self> {
        Ok(FusedMbConv(Common::parse(s, input)?))
    }
    fn output(&self) -> FeatureShape {
        self.0.output()
    }
    fn ops(&self) -> Vec<Op> {
        let c = &self.0;
        let (fused, mid, project) = self.geoms();
        let mut ops = ConvBn::ops(&fused, c.act, c.input);
        if c.se {
            ops.extend(SqueezeExcite::ops(mid, SqueezeExcite::squeeze(c.input.channels), c.act));
        }
        if let Some(p) = project {
            ops.extend(ConvBn::ops(&p, Act::None, mid));
        }
        if c.residual() {
            ops.push(residual_op(c.output()));
        }
        ops
    }
    fn build(&self, path: &nn::Path) -> Result<LayerModule> {
        let c = &self.0;
        let (fused, mid, project) = self.geoms();
        let mut built: Vec<Box<dyn ModuleT + Send>> = vec![Box::new(ConvBn::build(&(path / "fused"), &fused, c.act)?)];
        if c.se {
            built.push(Box::new(SqueezeExcite::build(
                &(path / "se"),
                mid.channels,
                SqueezeExcite::squeeze(c.input.channels),
                c.act,
            )?));
        }
        if let Some(p) = project {
            built.push(Box::new(ConvBn::build(&(path / "project"), &p, Act::None)?));
        }
        Ok(Box::new(InvertedResidual { units: built, residual: c.residual() }))
    }
}
