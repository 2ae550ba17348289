//! # Built-in datasets
//!
//! | spec | what |
//! |---|---|
//! | `synthetic[:k=v,...]` | the embedded default: generated in-process, deterministic, 10 classes |
//! | `cifar10:PATH`, `cifar100:PATH` | the CIFAR binary format |
//! | `mnist:PATH`, `fashion-mnist:PATH` | idx files, gzipped or not |
//! | `imagefolder:PATH` | `train/CLASS/*.jpg` (or png) and `val/CLASS/...`, decoded on demand |
//!
//! Each opens into a [`donna_sdk::data::Dataset`]; the SDK's loader does shuffling,
//! augmentation, normalisation and batching for all of them.
#![deny(missing_docs)]

pub mod cifar;
pub mod idx;
pub mod imagefolder;
pub mod synthetic;
#[cfg(test)]
mod test_dir;

inventory::submit! {
    donna_sdk::registry::BuiltinPlugin {
        datasets: &[&cifar::CIFAR10, &cifar::CIFAR100, &idx::MNIST, &idx::FASHION_MNIST, &imagefolder::IMAGE_FOLDER, &synthetic::PROVIDER],
        ..donna_sdk::registry::BuiltinPlugin::empty("datasets", env!("CARGO_PKG_VERSION"), "dataset formats: CIFAR, MNIST (IDX), image folders, the embedded synthetic set")
    }
}
