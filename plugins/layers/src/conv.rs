//! `conv_bn_act` and `pointwise`.

use donna_sdk::{FeatureShape, LayerModule, Op, Result, Settings};
use tch::nn;

use crate::parts::{positive, positive_or, Act, ConvBn, ConvGeom};
use crate::LayerConfig;

/// Conv + batch norm + activation (stems and heads of CNNs).
pub struct ConvBnAct {
    geom: ConvGeom,
    act: Act,
    input: FeatureShape,
}

impl LayerConfig for ConvBnAct {
    fn parse(s: &Settings, input: FeatureShape) -> Result<Self> {
        let geom = ConvGeom::new(
            input.channels,
            positive(s, "out")?,
            positive(s, "k")?,
            positive_or(s, "stride", 1)?,
            positive_or(s, "groups", 1)?,
        );
        geom.check(input)?;
        Ok(Self { geom, act: Act::from_settings(s, "act", "relu")?, input })
    }
    fn output(&self) -> FeatureShape {
        self.geom.output(self.input)
    }
    fn ops(&self) -> Vec<Op> {
        ConvBn::ops(&self.geom, self.act, self.input)
    }
    fn build(&self, path: &nn::Path) -> Result<LayerModule> {
        Ok(Box::new(ConvBn::build(path, &self.geom, self.act)?))
    }
}

/// A 1x1 conv with bias: changes the width of a feature map (attention blocks' projections).
pub struct Pointwise {
    geom: ConvGeom,
    input: FeatureShape,
}

impl LayerConfig for Pointwise {
    fn parse(s: &Settings, input: FeatureShape) -> Result<Self> {
        let geom = ConvGeom::pointwise(input.channels, positive(s, "out")?).with_bias();
        geom.check(input)?;
        Ok(Self { geom, input })
    }
    fn output(&self) -> FeatureShape {
        self.geom.output(self.input)
    }
    fn ops(&self) -> Vec<Op> {
        vec![self.geom.op(self.input)]
    }
    fn build(&self, path: &nn::Path) -> Result<LayerModule> {
        Ok(Box::new(self.geom.build(&(path / "proj"))?))
    }
}
