//! Everything that crosses the plugin boundary, and nothing else.
//!
//! These types have a stable layout (`#[derive(StableAbi)]`); abi_stable checks at load time
//! that host and plugin agree on every one of them. The tensor handles are tagged with the
//! libtorch version (`super::LIBTORCH_TAG`), so that check also refuses a plugin built on
//! another libtorch. The file reads its two constants from the including module so test
//! fixtures can build a deliberately mismatched copy of the interface.

// `#[sabi_trait]` (abi_stable 0.11) expands to impls inside a const, which newer rustc lints.
#![allow(non_local_definitions)]

use std::ffi::c_void;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::type_layout::Tag;
use abi_stable::{declare_root_module_statics, sabi_trait, StableAbi};

/// An owned libtorch tensor moved across the boundary (the receiver owns it).
///
/// Both sides share one `libtorch_cpu.so` (the plugin's dependency resolves to the one the
/// host already loaded), so a tensor made on one side is freed correctly on the other.
#[repr(transparent)]
#[derive(StableAbi)]
#[sabi(tag = Tag::str(super::LIBTORCH_TAG))]
pub struct OwnedTensor {
    ptr: *mut c_void,
}

// SAFETY: a libtorch tensor handle may move between threads; tch's `Tensor` is `Send` too.
unsafe impl Send for OwnedTensor {}

impl OwnedTensor {
    /// Takes ownership of `t`.
    pub fn new(mut t: tch::Tensor) -> Self {
        let ptr = t.as_mut_ptr() as *mut c_void;
        std::mem::forget(t);
        Self { ptr }
    }

    /// Back into a tch tensor (ownership moves to it).
    pub fn into_tch(self) -> tch::Tensor {
        let this = ManuallyDrop::new(self);
        // SAFETY: `ptr` came from a live `tch::Tensor` forgotten in `new` and is owned by us.
        unsafe { tch::Tensor::from_ptr(this.ptr as *mut torch_sys::C_tensor) }
    }
}

impl Drop for OwnedTensor {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and not used after this.
        unsafe { torch_sys::at_free(self.ptr as *mut torch_sys::C_tensor) }
    }
}

/// A borrowed libtorch tensor, valid for `'a`.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
#[sabi(tag = Tag::str(super::LIBTORCH_TAG))]
pub struct TensorRef<'a> {
    ptr: *mut c_void,
    borrow: PhantomData<&'a ()>,
}

impl<'a> TensorRef<'a> {
    /// Borrows `t`.
    pub fn new(t: &'a tch::Tensor) -> Self {
        Self { ptr: t.as_ptr() as *mut c_void, borrow: PhantomData }
    }

    /// The borrowed tensor. It must not be dropped (that would free the owner's handle), hence
    /// `ManuallyDrop`.
    pub fn get(&self) -> ManuallyDrop<tch::Tensor> {
        // SAFETY: the owner keeps the handle alive for 'a and ManuallyDrop never frees it.
        ManuallyDrop::new(unsafe { tch::Tensor::from_ptr(self.ptr as *mut torch_sys::C_tensor) })
    }
}

/// A feature map's shape: channels x height x width.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RShape {
    /// Channels.
    pub channels: i64,
    /// Height.
    pub height: i64,
    /// Width.
    pub width: i64,
}

/// A setting's value.
#[repr(u8)]
#[derive(StableAbi, Clone, Debug)]
pub enum RValue {
    /// A flag.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A name.
    Name(RString),
}

/// One `key = value` setting.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct RSetting {
    /// The key.
    pub key: RString,
    /// The value.
    pub value: RValue,
}

/// Settings of a layer or a block option, in key order.
pub type RSettings = RVec<RSetting>;

/// A primitive op's hardware kind (the SDK's `OpKind`, same order).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ROpKind {
    Conv,
    Depthwise,
    Pointwise,
    Linear,
    Matmul,
    Softmax,
    SqueezeExcite,
    Activation,
    Norm,
    Pool,
    Elementwise,
}

/// One primitive op for one sample (the SDK's `Op`).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct ROp {
    /// Hardware kind.
    pub kind: ROpKind,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Trainable parameters.
    pub params: u64,
    /// Activation elements read.
    pub input_elems: u64,
    /// Activation elements written.
    pub output_elems: u64,
}

/// A layer of a network: a layer type's name and its settings.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct RLayerSpec {
    /// Registered layer type name.
    pub kind: RString,
    /// Its settings.
    pub settings: RSettings,
}

/// A named parameter (or buffer) of a built layer: a shallow clone that shares storage with
/// the plugin's module, so the host's optimizer and checkpoints update it in place.
#[repr(C)]
#[derive(StableAbi)]
pub struct RParam {
    /// Dotted name relative to the layer (`dw.conv.weight`).
    pub name: RString,
    /// The tensor.
    pub tensor: OwnedTensor,
    /// Whether the optimizer trains it (batch-norm running statistics are not trained).
    pub trainable: bool,
}

/// A built layer's forward pass.
#[sabi_trait]
pub trait LayerModuleFfi: Send {
    /// NCHW in, NCHW out; an error instead of a panic.
    #[sabi(last_prefix_field)]
    fn forward(&self, xs: TensorRef<'_>, train: bool) -> RResult<OwnedTensor, RString>;
}

/// A boxed [`LayerModuleFfi`].
pub type LayerModuleBox = LayerModuleFfi_TO<'static, RBox<()>>;

/// A layer built by a plugin: its module and its parameters.
#[repr(C)]
#[derive(StableAbi)]
pub struct RBuiltLayer {
    /// The forward pass.
    pub module: LayerModuleBox,
    /// Every variable the module owns, to add to the host's variable store.
    pub params: RVec<RParam>,
}

/// A layer type (the SDK's `LayerType` with data instead of tch paths).
#[sabi_trait]
pub trait LayerTypeFfi: Send + Sync {
    /// Registered name.
    fn name(&self) -> RString;
    /// One line for `donna layers`.
    fn summary(&self) -> RString;
    /// Output shape for `input`.
    fn output_shape(&self, settings: &RSettings, input: RShape) -> RResult<RShape, RString>;
    /// The primitive ops on one sample.
    fn ops(&self, settings: &RSettings, input: RShape) -> RResult<RVec<ROp>, RString>;
    /// Builds the layer on `device` (-1: CPU, n: CUDA device n).
    #[sabi(last_prefix_field)]
    fn build(&self, settings: &RSettings, input: RShape, device: i64) -> RResult<RBuiltLayer, RString>;
}

/// A boxed [`LayerTypeFfi`].
pub type LayerTypeBox = LayerTypeFfi_TO<'static, RBox<()>>;

/// A search space's configuration (the SDK's `SpaceConfig`).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct RSpaceConfig {
    /// Input resolution.
    pub resolution: i64,
    /// Width multiplier.
    pub width_mult: f64,
    /// Classes.
    pub num_classes: i64,
    /// Input channels.
    pub in_channels: i64,
}

/// An axis of choice of a block.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct RDimension {
    /// Key in the text form.
    pub key: RString,
    /// Readable name.
    pub name: RString,
    /// Allowed values.
    pub values: RVec<RValue>,
}

/// A searchable block (the SDK's `BlockSpec`).
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct RBlock {
    /// Input shape (filled in by the host's trace; zero in a plugin's layout).
    pub input: RShape,
    /// Output shape (a plugin's layout only needs the channels).
    pub output: RShape,
    /// Spatial stride.
    pub stride: i64,
    /// Axes of choice.
    pub dims: RVec<RDimension>,
    /// The options.
    pub options: RVec<RSettings>,
    /// Rules shown when a combination is not an option.
    pub rules: RVec<RString>,
}

/// A search space as data: what `LayoutSpace::new` takes.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct RSpaceLayout {
    /// Fixed layers before block 0.
    pub stem: RVec<RLayerSpec>,
    /// The searchable blocks.
    pub blocks: RVec<RBlock>,
    /// Fixed layers after the last block.
    pub head: RVec<RLayerSpec>,
    /// The teacher's option of each block.
    pub teacher: RVec<RSettings>,
}

/// A search space provider.
#[sabi_trait]
pub trait SpaceProviderFfi: Send + Sync {
    /// Registered name.
    fn name(&self) -> RString;
    /// One line for `donna spaces`.
    fn summary(&self) -> RString;
    /// The space's layout for `config`.
    fn layout(&self, config: RSpaceConfig) -> RResult<RSpaceLayout, RString>;
    /// The layers of `option` in `block` (its traced spec).
    #[sabi(last_prefix_field)]
    fn block_layers(
        &self,
        config: RSpaceConfig,
        index: usize,
        block: &RBlock,
        option: &RSettings,
    ) -> RResult<RVec<RLayerSpec>, RString>;
}

/// A boxed [`SpaceProviderFfi`].
pub type SpaceProviderBox = SpaceProviderFfi_TO<'static, RBox<()>>;

/// Numeric precision (the SDK's `Precision`).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug)]
#[allow(missing_docs)]
pub enum RPrecision {
    Fp32,
    Fp16,
    Int8,
}

/// How latencies are obtained (the SDK's `LatencyMethod`).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug)]
#[allow(missing_docs)]
pub enum RLatencyMethod {
    Analytical,
    LookupTable,
    Measured,
}

/// What a cost model is (the SDK's `DeviceInfo`).
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct RDeviceInfo {
    /// Device name.
    pub device: RString,
    /// Runtime.
    pub runtime: RString,
    /// Runtime version (latency caches are keyed by it).
    pub runtime_version: RString,
    /// How it knows.
    pub method: RLatencyMethod,
    /// Default precision.
    pub precision: RPrecision,
}

/// One part of an architecture to price: the stem, a block or the head.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct RPart {
    /// `stem`, `b0`, `b1`, …, `head`.
    pub name: RString,
    /// The block's option in text form (`k3-e6`); empty for stem and head.
    pub option: RString,
    /// Input shape.
    pub input: RShape,
    /// Output shape.
    pub output: RShape,
    /// Its primitive ops on one sample.
    pub ops: RVec<ROp>,
}

/// An architecture to price.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct RArchCost {
    /// Its space.
    pub space: RString,
    /// Its text form.
    pub text: RString,
    /// Stem, blocks and head.
    pub parts: RVec<RPart>,
}

/// The inference setting priced.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct RCostQuery {
    /// Batch size.
    pub batch: i64,
    /// Precision.
    pub precision: RPrecision,
}

/// One latency figure.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct RLatency {
    /// Milliseconds per batch.
    pub ms: f64,
    /// Coefficient of variation when measured.
    pub cv: ROption<f64>,
}

/// A hardware target's latency model.
#[sabi_trait]
pub trait CostModelFfi: Send + Sync {
    /// What it is.
    fn info(&self) -> RDeviceInfo;
    /// Latencies of `archs`, in order.
    #[sabi(last_prefix_field)]
    fn latency(&self, archs: RSlice<'_, RArchCost>, query: RCostQuery) -> RResult<RVec<RLatency>, RString>;
}

/// A boxed [`CostModelFfi`].
pub type CostModelBox = CostModelFfi_TO<'static, RBox<()>>;

/// Makes cost models: `--device NAME:ARGS`.
#[sabi_trait]
pub trait DeviceProviderFfi: Send + Sync {
    /// Registered name.
    fn name(&self) -> RString;
    /// One line for `donna devices`.
    fn summary(&self) -> RString;
    /// The cost model for `args` (what follows `NAME:`).
    #[sabi(last_prefix_field)]
    fn build(&self, args: RStr<'_>) -> RResult<CostModelBox, RString>;
}

/// A boxed [`DeviceProviderFfi`].
pub type DeviceProviderBox = DeviceProviderFfi_TO<'static, RBox<()>>;

/// Who a plugin is and what it was built against.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct RPluginInfo {
    /// The plugin's name.
    pub name: RString,
    /// Its own version.
    pub version: RString,
    /// One line for `donna plugins`.
    pub summary: RString,
    /// The interface version it was built against.
    pub interface: RString,
    /// The libtorch version it was built against.
    pub libtorch: RString,
}

/// Everything a plugin contributes.
#[repr(C)]
#[derive(StableAbi)]
pub struct RPluginContents {
    /// Who it is.
    pub info: RPluginInfo,
    /// Layer types.
    pub layer_types: RVec<LayerTypeBox>,
    /// Search spaces.
    pub spaces: RVec<SpaceProviderBox>,
    /// Devices.
    pub devices: RVec<DeviceProviderBox>,
}

/// The root module every plugin library exports (a prefix type: fields can be appended in a
/// minor version without breaking older plugins).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRef)))]
#[sabi(missing_field(panic))]
pub struct Plugin {
    /// What the plugin contributes; an error if it cannot start.
    #[sabi(last_prefix_field)]
    pub contents: extern "C" fn() -> RResult<RPluginContents, RString>,
}

impl RootModule for PluginRef {
    declare_root_module_statics! {PluginRef}
    const BASE_NAME: &'static str = "donna_plugin";
    const NAME: &'static str = "donna_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(super::INTERFACE_VERSION);
}
