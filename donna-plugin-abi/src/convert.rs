//! Conversions between the SDK's types and their stable forms in [`crate::ffi`].

use abi_stable::std_types::{RString, RVec};
use donna_sdk::counters::{Op, OpKind};
use donna_sdk::{
    BlockSpec, DeviceInfo, Dimension, FeatureShape, LatencyMethod, LayerSpec, Precision, Settings, SpaceConfig, Value,
};

use crate::ffi::*;

/// Stable form of a shape.
pub fn shape(s: FeatureShape) -> RShape {
    RShape { channels: s.channels, height: s.height, width: s.width }
}

/// SDK form of a shape.
pub fn sdk_shape(s: RShape) -> FeatureShape {
    FeatureShape::new(s.channels, s.height, s.width)
}

/// Stable form of a value.
pub fn value(v: &Value) -> RValue {
    match v {
        Value::Bool(b) => RValue::Bool(*b),
        Value::Int(i) => RValue::Int(*i),
        Value::Float(x) => RValue::Float(*x),
        Value::Name(s) => RValue::Name(s.as_str().into()),
    }
}

/// SDK form of a value.
pub fn sdk_value(v: &RValue) -> Value {
    match v {
        RValue::Bool(b) => Value::Bool(*b),
        RValue::Int(i) => Value::Int(*i),
        RValue::Float(x) => Value::Float(*x),
        RValue::Name(s) => Value::Name(s.to_string()),
    }
}

/// Stable form of settings.
pub fn settings(s: &Settings) -> RSettings {
    s.iter().map(|(k, v)| RSetting { key: k.into(), value: value(v) }).collect()
}

/// SDK form of settings.
pub fn sdk_settings(s: &RSettings) -> Settings {
    let mut out = Settings::new();
    for setting in s.iter() {
        out.set(&setting.key, sdk_value(&setting.value));
    }
    out
}

const KINDS: [(OpKind, ROpKind); 11] = [
    (OpKind::Conv, ROpKind::Conv),
    (OpKind::Depthwise, ROpKind::Depthwise),
    (OpKind::Pointwise, ROpKind::Pointwise),
    (OpKind::Linear, ROpKind::Linear),
    (OpKind::Matmul, ROpKind::Matmul),
    (OpKind::Softmax, ROpKind::Softmax),
    (OpKind::SqueezeExcite, ROpKind::SqueezeExcite),
    (OpKind::Activation, ROpKind::Activation),
    (OpKind::Norm, ROpKind::Norm),
    (OpKind::Pool, ROpKind::Pool),
    (OpKind::Elementwise, ROpKind::Elementwise),
];

/// Stable form of an op.
pub fn op(o: &Op) -> ROp {
    let kind = KINDS.iter().find(|(k, _)| *k == o.kind).map(|(_, r)| *r).unwrap_or(ROpKind::Elementwise);
    ROp { kind, macs: o.macs, params: o.params, input_elems: o.input_elems, output_elems: o.output_elems }
}

/// SDK form of an op.
pub fn sdk_op(o: &ROp) -> Op {
    let kind = KINDS.iter().find(|(_, r)| *r == o.kind).map(|(k, _)| *k).unwrap_or(OpKind::Elementwise);
    Op { kind, macs: o.macs, params: o.params, input_elems: o.input_elems, output_elems: o.output_elems }
}

/// Stable form of a layer spec.
pub fn layer(l: &LayerSpec) -> RLayerSpec {
    RLayerSpec { kind: l.kind.as_str().into(), settings: settings(&l.settings) }
}

/// SDK form of a layer spec.
pub fn sdk_layer(l: &RLayerSpec) -> LayerSpec {
    LayerSpec::new(&l.kind, sdk_settings(&l.settings))
}

/// Stable form of a space configuration.
pub fn space_config(c: &SpaceConfig) -> RSpaceConfig {
    RSpaceConfig {
        resolution: c.resolution,
        width_mult: c.width_mult,
        num_classes: c.num_classes,
        in_channels: c.in_channels,
    }
}

/// SDK form of a space configuration.
pub fn sdk_space_config(c: RSpaceConfig) -> SpaceConfig {
    SpaceConfig {
        resolution: c.resolution,
        width_mult: c.width_mult,
        num_classes: c.num_classes,
        in_channels: c.in_channels,
    }
}

/// Stable form of a block.
pub fn block(b: &BlockSpec) -> RBlock {
    RBlock {
        input: shape(b.input),
        output: shape(b.output),
        stride: b.stride,
        dims: b
            .dims
            .iter()
            .map(|d| RDimension {
                key: d.key.as_str().into(),
                name: d.name.as_str().into(),
                values: d.values.iter().map(value).collect(),
            })
            .collect(),
        options: b.options.iter().map(settings).collect(),
        rules: b.rules.iter().map(|r| RString::from(r.as_str())).collect(),
    }
}

/// SDK form of a block.
pub fn sdk_block(b: &RBlock) -> BlockSpec {
    BlockSpec {
        input: sdk_shape(b.input),
        output: sdk_shape(b.output),
        stride: b.stride,
        dims: b
            .dims
            .iter()
            .map(|d| Dimension {
                key: d.key.to_string(),
                name: d.name.to_string(),
                values: d.values.iter().map(sdk_value).collect(),
            })
            .collect(),
        options: b.options.iter().map(sdk_settings).collect(),
        rules: b.rules.iter().map(|r| r.to_string()).collect(),
    }
}

/// Stable form of a precision.
pub fn precision(p: Precision) -> RPrecision {
    match p {
        Precision::Fp32 => RPrecision::Fp32,
        Precision::Fp16 => RPrecision::Fp16,
        Precision::Int8 => RPrecision::Int8,
    }
}

/// SDK form of a precision.
pub fn sdk_precision(p: RPrecision) -> Precision {
    match p {
        RPrecision::Fp32 => Precision::Fp32,
        RPrecision::Fp16 => Precision::Fp16,
        RPrecision::Int8 => Precision::Int8,
    }
}

/// Stable form of a device description.
pub fn device_info(i: &DeviceInfo) -> RDeviceInfo {
    RDeviceInfo {
        device: i.device.as_str().into(),
        runtime: i.runtime.as_str().into(),
        runtime_version: i.runtime_version.as_str().into(),
        method: match i.method {
            LatencyMethod::Analytical => RLatencyMethod::Analytical,
            LatencyMethod::LookupTable => RLatencyMethod::LookupTable,
            LatencyMethod::Measured => RLatencyMethod::Measured,
        },
        precision: precision(i.precision),
    }
}

/// SDK form of a device description.
pub fn sdk_device_info(i: &RDeviceInfo) -> DeviceInfo {
    DeviceInfo {
        device: i.device.to_string(),
        runtime: i.runtime.to_string(),
        runtime_version: i.runtime_version.to_string(),
        method: match i.method {
            RLatencyMethod::Analytical => LatencyMethod::Analytical,
            RLatencyMethod::LookupTable => LatencyMethod::LookupTable,
            RLatencyMethod::Measured => LatencyMethod::Measured,
        },
        precision: sdk_precision(i.precision),
    }
}

/// Stable form of a list.
pub fn vec<T, U>(items: &[T], f: impl Fn(&T) -> U) -> RVec<U> {
    items.iter().map(f).collect()
}

/// The tch device for the stable device index (-1: CPU).
pub fn device(index: i64) -> tch::Device {
    if index < 0 {
        tch::Device::Cpu
    } else {
        tch::Device::Cuda(index as usize)
    }
}

/// The stable device index of a tch device.
pub fn device_index(d: tch::Device) -> i64 {
    match d {
        tch::Device::Cuda(i) => i as i64,
        _ => -1,
    }
}
