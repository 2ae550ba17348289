//! CIFAR-10 and CIFAR-100 in their binary distribution format (`cifar-10-batches-bin`,
//! `cifar-100-binary`).
//!
//! The binary format is chosen over the Python pickles because it needs no decoder: every record
//! is a fixed-size run of bytes whose image part is already in the planar layout
//! ([`Dataset::load`] writes: 1024 red, then 1024 green, then 1024 blue bytes of a row-major
//! 32x32 image). A whole set is small (about 180 MB), so it is read into memory and validated
//! once at open, and [`Dataset::load`] is a copy.
//!
//! | spec | files in `PATH` | record |
//! |---|---|---|
//! | `cifar10:PATH` | `data_batch_1.bin` .. `data_batch_5.bin` (train), `test_batch.bin` (val) | label, 3072 pixels |
//! | `cifar100:PATH` | `train.bin` (train), `test.bin` (val) | coarse label, fine label, 3072 pixels |
//!
//! CIFAR-100 is trained on its 100 fine labels; the coarse (superclass) label is checked and
//! then ignored. Files may hold any number of whole records, but none may be empty.

use std::path::{Path, PathBuf};

use donna_sdk::data::{Dataset, DatasetInfo, DatasetProvider, Split};
use donna_sdk::{Result, SdkError};

/// Side of a CIFAR image.
const SIDE: usize = 32;
/// Bytes of one CIFAR image (3 planes of 32x32).
const IMAGE_BYTES: usize = 3 * SIDE * SIDE;

/// Opens `cifar10:PATH`, a directory of the CIFAR-10 binary batches.
pub struct Cifar10;

/// Opens `cifar100:PATH`, a directory holding the CIFAR-100 binary `train.bin` and `test.bin`.
pub struct Cifar100;

/// The registered CIFAR-10 provider.
pub static CIFAR10: Cifar10 = Cifar10;
/// The registered CIFAR-100 provider.
pub static CIFAR100: Cifar100 = Cifar100;

/// How the records of one CIFAR variant are laid out.
struct Layout {
    /// Provider name, also the prefix of the dataset's name.
    name: &'static str,
    /// Human name for messages.
    title: &'static str,
    /// Label bytes before the pixels.
    label_bytes: usize,
    /// Exclusive upper bound of each label byte, in order (CIFAR-100: coarse 20, fine 100).
    label_bounds: &'static [u8],
    /// Which label byte is the class.
    class_byte: usize,
    /// Training files, read in this order.
    train: &'static [&'static str],
    /// Validation files.
    val: &'static [&'static str],
}

const CIFAR10_LAYOUT: Layout = Layout {
    name: "cifar10",
    title: "CIFAR-10",
    label_bytes: 1,
    label_bounds: &[10],
    class_byte: 0,
    train: &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
    val: &["test_batch.bin"],
};

const CIFAR100_LAYOUT: Layout = Layout {
    name: "cifar100",
    title: "CIFAR-100",
    label_bytes: 2,
    label_bounds: &[20, 100],
    class_byte: 1,
    train: &["train.bin"],
    val: &["test.bin"],
};

impl Layout {
    fn record_bytes(&self) -> usize {
        self.label_bytes + IMAGE_BYTES
    }

    fn classes(&self) -> i64 {
        i64::from(self.label_bounds[self.class_byte])
    }

    /// Reads and validates `files` of `dir` into one buffer of records.
    fn read_split(&self, dir: &Path, files: &[&str]) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        for file in files {
            let path = dir.join(file);
            let bytes = read_file(&path, || format!("missing (expected the {} binary file {file})", self.title))?;
            self.check(&path, &bytes)?;
            if all.is_empty() {
                all = bytes;
            } else {
                all.extend_from_slice(&bytes);
            }
        }
        Ok(all)
    }

    /// Checks that `bytes` (the content of `path`) are whole records with labels in range.
    fn check(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let record = self.record_bytes();
        if bytes.is_empty() {
            return Err(SdkError::Config(format!(
                "{}: empty (expected {record}-byte {} records)",
                path.display(),
                self.title
            )));
        }
        if bytes.len() % record != 0 {
            return Err(SdkError::Config(format!(
                "{}: {} bytes is not a whole number of {record}-byte {} records",
                path.display(),
                bytes.len(),
                self.title
            )));
        }
        for (i, rec) in bytes.chunks_exact(record).enumerate() {
            for (b, &bound) in self.label_bounds.iter().enumerate() {
                if rec[b] >= bound {
                    return Err(SdkError::Config(format!(
                        "{}: record {i} has label {} (byte {b}), expected 0..{bound}; is this really {} binary data?",
                        path.display(),
                        rec[b],
                        self.title
                    )));
                }
            }
        }
        Ok(())
    }

    fn open(&'static self, arg: &str) -> Result<Box<dyn Dataset>> {
        if arg.is_empty() {
            return Err(SdkError::Config(format!(
                "{}: needs the directory of the {} binary files, as in {}:/data/cifar",
                self.name, self.title, self.name
            )));
        }
        let dir = PathBuf::from(arg);
        if !dir.is_dir() {
            let names = self.train.iter().chain(self.val).copied().collect::<Vec<_>>().join(", ");
            return Err(SdkError::Config(format!(
                "{}: not a directory (expected a directory holding the {} binary files {names})",
                dir.display(),
                self.title
            )));
        }
        let train = self.read_split(&dir, self.train)?;
        let val = self.read_split(&dir, self.val)?;
        let record = self.record_bytes();
        let info = DatasetInfo {
            name: format!("{}:{arg}", self.name),
            classes: self.classes(),
            channels: 3,
            height: SIDE as i64,
            width: SIDE as i64,
            train_len: train.len() / record,
            val_len: val.len() / record,
        };
        Ok(Box::new(Cifar { layout: self, info, train, val }))
    }
}

/// Reads a whole file; a missing one is a configuration error described by `missing`.
fn read_file(path: &Path, missing: impl FnOnce() -> String) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SdkError::Config(format!("{}: {}", path.display(), missing()))
        } else {
            SdkError::Io { path: path.display().to_string(), source }
        }
    })
}

/// `train` or `val`, for messages.
fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Val => "val",
    }
}

/// An opened CIFAR set: all records in memory.
struct Cifar {
    layout: &'static Layout,
    info: DatasetInfo,
    train: Vec<u8>,
    val: Vec<u8>,
}

impl Dataset for Cifar {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }

    fn load(&self, split: Split, index: usize, out: &mut [u8]) -> Result<i64> {
        let records = match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        };
        let record = self.layout.record_bytes();
        let len = self.info.len(split);
        if index >= len {
            return Err(SdkError::Config(format!(
                "{}: {} sample {index} is out of range ({len} samples)",
                self.info.name,
                split_name(split)
            )));
        }
        if out.len() != IMAGE_BYTES {
            return Err(SdkError::Config(format!(
                "{}: output buffer holds {} bytes, expected {IMAGE_BYTES} (3x32x32)",
                self.info.name,
                out.len()
            )));
        }
        let rec = &records[index * record..(index + 1) * record];
        out.copy_from_slice(&rec[self.layout.label_bytes..]);
        Ok(i64::from(rec[self.layout.class_byte]))
    }
}

impl DatasetProvider for Cifar10 {
    fn name(&self) -> &str {
        CIFAR10_LAYOUT.name
    }

    fn summary(&self) -> &str {
        "cifar10:PATH  CIFAR-10 binary format (data_batch_1..5.bin, test_batch.bin), 10 classes, 32x32 RGB"
    }

    fn open(&self, arg: &str, _resolution: i64) -> Result<Box<dyn Dataset>> {
        CIFAR10_LAYOUT.open(arg)
    }
}

impl DatasetProvider for Cifar100 {
    fn name(&self) -> &str {
        CIFAR100_LAYOUT.name
    }

    fn summary(&self) -> &str {
        "cifar100:PATH  CIFAR-100 binary format (train.bin, test.bin), 100 fine-label classes, 32x32 RGB"
    }

    fn open(&self, arg: &str, _resolution: i64) -> Result<Box<dyn Dataset>> {
        CIFAR100_LAYOUT.open(arg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    /// The pixels of sample `seed`: each byte depends on the seed, the channel and the position.
    fn image(seed: usize) -> Vec<u8> {
        (0..IMAGE_BYTES).map(|i| (seed * 31 + (i / 1024) * 85 + i * 7) as u8).collect()
    }

    /// Writes one record per entry of `labels` (each with its label bytes) using `image(seeds[i])`.
    fn write(path: &Path, records: &[(Vec<u8>, usize)]) {
        let mut bytes = Vec::new();
        for (labels, seed) in records {
            bytes.extend_from_slice(labels);
            bytes.extend_from_slice(&image(*seed));
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// A CIFAR-10 directory with 3 records per file; train sample `i` has seed `i` and label
    /// `i % 10`, val sample `i` seed `100 + i` and label `9 - i`.
    fn cifar10_dir(tag: &str) -> TempDir {
        let dir = TempDir::new("cifar", tag);
        for b in 0..5 {
            let recs: Vec<_> = (0..3).map(|j| b * 3 + j).map(|i| (vec![(i % 10) as u8], i)).collect();
            write(&dir.0.join(format!("data_batch_{}.bin", b + 1)), &recs);
        }
        write(&dir.0.join("test_batch.bin"), &(0..3).map(|i| (vec![9 - i as u8], 100 + i)).collect::<Vec<_>>());
        dir
    }

    fn err(r: Result<Box<dyn Dataset>>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn cifar10_reads_back_every_batch_file_in_order_with_exact_pixels_and_labels() {
        let dir = cifar10_dir("c10");
        let ds = CIFAR10.open(dir.arg(), 32).unwrap();
        let info = ds.info();
        assert_eq!(info.name, format!("cifar10:{}", dir.arg()));
        assert_eq!((info.classes, info.channels, info.height, info.width), (10, 3, 32, 32));
        assert_eq!((info.train_len, info.val_len), (15, 3));
        let mut out = vec![0u8; info.sample_bytes()];
        for i in [0, 2, 3, 7, 14] {
            assert_eq!(ds.load(Split::Train, i, &mut out).unwrap(), (i % 10) as i64);
            assert_eq!(out, image(i), "train sample {i}");
        }
        for i in 0..3 {
            assert_eq!(ds.load(Split::Val, i, &mut out).unwrap(), 9 - i as i64);
            assert_eq!(out, image(100 + i), "val sample {i}");
        }
    }

    #[test]
    fn cifar10_is_registered_under_its_spec_name() {
        let dir = cifar10_dir("registry");
        let ds = donna_sdk::registry::dataset(&format!("cifar10:{}", dir.arg()), 32).unwrap();
        assert_eq!(ds.info().train_len, 15);
        assert!(donna_sdk::registry::datasets().iter().any(|d| d.name() == "cifar100"));
    }

    #[test]
    fn cifar100_uses_the_fine_label() {
        let dir = TempDir::new("cifar", "c100");
        write(&dir.0.join("train.bin"), &[(vec![3, 42], 1), (vec![19, 99], 2), (vec![0, 0], 3), (vec![7, 57], 4)]);
        write(&dir.0.join("test.bin"), &[(vec![5, 12], 5), (vec![1, 88], 6)]);
        let ds = CIFAR100.open(dir.arg(), 32).unwrap();
        let info = ds.info();
        assert_eq!((info.classes, info.channels, info.height, info.width), (100, 3, 32, 32));
        assert_eq!((info.train_len, info.val_len), (4, 2));
        let mut out = vec![0u8; IMAGE_BYTES];
        for (i, label) in [(0, 42), (1, 99), (2, 0), (3, 57)] {
            assert_eq!(ds.load(Split::Train, i, &mut out).unwrap(), label);
            assert_eq!(out, image(i + 1));
        }
        assert_eq!(ds.load(Split::Val, 1, &mut out).unwrap(), 88);
        assert_eq!(out, image(6));
    }

    #[test]
    fn truncated_file_is_an_error_naming_it_and_the_record_size() {
        let dir = cifar10_dir("trunc");
        let path = dir.0.join("data_batch_3.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&path, bytes).unwrap();
        let msg = err(CIFAR10.open(dir.arg(), 32));
        assert!(msg.contains("data_batch_3.bin") && msg.contains("9209 bytes") && msg.contains("3073-byte"), "{msg}");
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = cifar10_dir("empty");
        std::fs::write(dir.0.join("test_batch.bin"), b"").unwrap();
        let msg = err(CIFAR10.open(dir.arg(), 32));
        assert!(msg.contains("test_batch.bin: empty"), "{msg}");
    }

    #[test]
    fn missing_batch_file_is_an_error_naming_it() {
        let dir = cifar10_dir("missing");
        std::fs::remove_file(dir.0.join("data_batch_5.bin")).unwrap();
        let msg = err(CIFAR10.open(dir.arg(), 32));
        assert!(msg.contains("data_batch_5.bin: missing"), "{msg}");
    }

    #[test]
    fn missing_directory_and_empty_arg_are_errors() {
        let dir = TempDir::new("cifar", "nodir");
        let gone = dir.0.join("nope");
        let msg = err(CIFAR10.open(gone.to_str().unwrap(), 32));
        assert!(msg.contains("nope: not a directory") && msg.contains("test_batch.bin"), "{msg}");
        assert!(err(CIFAR100.open("", 32)).contains("needs the directory"));
    }

    #[test]
    fn out_of_range_labels_are_rejected() {
        let dir = TempDir::new("cifar", "labels");
        write(&dir.0.join("train.bin"), &[(vec![3, 42], 1), (vec![3, 100], 2)]);
        write(&dir.0.join("test.bin"), &[(vec![5, 12], 5)]);
        let msg = err(CIFAR100.open(dir.arg(), 32));
        assert!(msg.contains("train.bin: record 1 has label 100"), "{msg}");
        let dir = cifar10_dir("labels10");
        write(&dir.0.join("test_batch.bin"), &[(vec![10], 1)]);
        assert!(err(CIFAR10.open(dir.arg(), 32)).contains("expected 0..10"));
    }

    #[test]
    fn load_rejects_out_of_range_index_and_wrong_buffer() {
        let dir = cifar10_dir("range");
        let ds = CIFAR10.open(dir.arg(), 32).unwrap();
        let mut out = vec![0u8; IMAGE_BYTES];
        assert!(ds.load(Split::Val, 3, &mut out).is_err());
        assert!(ds.load(Split::Train, 0, &mut out[..10]).is_err());
    }
}
