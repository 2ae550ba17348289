//! # donna-plugin-abi: the stable boundary between donna and its dynamic plugins
//!
//! A plugin is a `cdylib` that `donna --plugin PATH.so` loads at run time. It can contribute
//! layer types (usable as options of search spaces), whole search spaces, and devices (cost
//! models). This crate is the only thing both sides must agree on:
//!
//! - [`ffi`]: the types that cross the boundary, all `#[derive(StableAbi)]`: a prefix root
//!   module ([`ffi::PluginRef`]), `#[sabi_trait]` objects for layer types, built layers, spaces,
//!   devices and cost models, and tensor handles tagged with the libtorch version.
//! - [`export`]: the plugin side. Authors implement the SDK's own `LayerType` (as the built-in
//!   layers do), a [`export::PluginSpace`] or a [`export::PluginDevice`], collect them in a
//!   [`export::PluginBuilder`] and call [`export_plugin!`]. Every entry point is guarded, so a
//!   panic in a plugin becomes an error for that call.
//! - [`host`]: the host side. [`host::load`] checks a library (interface version, then the
//!   layout of every type, which includes the libtorch tag) and registers adapters that
//!   implement the SDK's traits, so every command treats plugin contributions like built-ins.
//!
//! Why this shape: Rust has no stable ABI, so nothing of the SDK's own types (`Settings`,
//! `Box<dyn LayerType>`, `nn::Path`) may cross; everything is copied into `R*` mirrors, and a
//! built layer hands its variables over as named shallow clones that the host adds to its
//! `VarStore` (the host's optimizer then trains the plugin's tensors in place). Both sides
//! share one libtorch, loaded by the host.
//!
//! ```ignore
//! // In a plugin crate (crate-type = ["cdylib"]):
//! fn plugin() -> donna_plugin_abi::PluginBuilder {
//!     donna_plugin_abi::PluginBuilder::new("mydevice", env!("CARGO_PKG_VERSION"), "a latency table")
//!         .device(MyDevice)
//! }
//! donna_plugin_abi::export_plugin!(plugin);
//! ```
#![deny(missing_docs)]

/// The interface version: plugins load into a donna with the same major version.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The libtorch version (without the `+cpu`/`+cu130` suffix) this crate was built against;
/// tensor handles carry it as their layout tag.
pub const LIBTORCH_TAG: &str = env!("DONNA_LIBTORCH_VERSION");

pub mod convert;
pub mod export;
#[allow(missing_docs)] // the items `#[sabi_trait]` generates
pub mod ffi;
pub mod host;

pub use export::{ArchCost, PartCost, PluginBuilder, PluginCostModel, PluginDevice, PluginSpace, SpaceLayout};

/// Re-exported for [`export_plugin!`] and plugin crates.
pub use abi_stable;
