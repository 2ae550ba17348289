//! MNIST and Fashion-MNIST in the idx format they are distributed in, gzipped or not.
//!
//! idx is the simplest possible array file: a big-endian magic number `0x0000TTNN` (`TT` the
//! element type, `0x08` for unsigned bytes; `NN` the number of dimensions), one big-endian `u32`
//! per dimension, then the elements in row-major order. Images are `0x00000803` (`n x rows x
//! cols` bytes) and labels `0x00000801` (`n` bytes), so a grey image is already the single
//! plane [`Dataset::load`] writes. Both sets are small (about 55 MB decoded), so the four files
//! are read, un-gzipped and validated at open, and loading a sample is a copy.
//!
//! `PATH` holds `train-images-idx3-ubyte`, `train-labels-idx1-ubyte` (train) and
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (val), each either as such or with a
//! `.gz` suffix, as downloaded (the plain file is used when both exist). The image size is taken
//! from the files (28x28 for both sets); there are 10 classes.

use std::io::Read;
use std::path::{Path, PathBuf};

use donna_sdk::data::{Dataset, DatasetInfo, DatasetProvider, Split};
use donna_sdk::{Result, SdkError};

/// Classes of both MNIST and Fashion-MNIST.
const CLASSES: u8 = 10;
/// Magic number of an idx file of unsigned bytes with 3 dimensions (images).
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an idx file of unsigned bytes with 1 dimension (labels).
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Opens `mnist:PATH`, a directory of the MNIST idx files.
pub struct Mnist;

/// Opens `fashion-mnist:PATH`, a directory of the Fashion-MNIST idx files (same names and
/// format as MNIST).
pub struct FashionMnist;

/// The registered MNIST provider.
pub static MNIST: Mnist = Mnist;
/// The registered Fashion-MNIST provider.
pub static FASHION_MNIST: FashionMnist = FashionMnist;

impl DatasetProvider for Mnist {
    fn name(&self) -> &str {
        "mnist"
    }

    fn summary(&self) -> &str {
        "mnist:PATH  MNIST idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-..., optionally .gz), \
         10 classes, 28x28 grey"
    }

    fn open(&self, arg: &str, _resolution: i64) -> Result<Box<dyn Dataset>> {
        open(self.name(), "MNIST", arg)
    }
}

impl DatasetProvider for FashionMnist {
    fn name(&self) -> &str {
        "fashion-mnist"
    }

    fn summary(&self) -> &str {
        "fashion-mnist:PATH  Fashion-MNIST idx files (same names as MNIST, optionally .gz), 10 classes, 28x28 grey"
    }

    fn open(&self, arg: &str, _resolution: i64) -> Result<Box<dyn Dataset>> {
        open(self.name(), "Fashion-MNIST", arg)
    }
}

/// One split in memory: `len` images of `height x width` bytes one after the other, and labels.
struct Part {
    images: Vec<u8>,
    labels: Vec<u8>,
    height: usize,
    width: usize,
}

/// An opened MNIST-like set.
struct Idx {
    info: DatasetInfo,
    train: Part,
    val: Part,
}

fn open(name: &str, title: &str, arg: &str) -> Result<Box<dyn Dataset>> {
    if arg.is_empty() {
        return Err(SdkError::Config(format!(
            "{name}: needs the directory of the {title} idx files, as in {name}:/data/{name}"
        )));
    }
    let dir = PathBuf::from(arg);
    if !dir.is_dir() {
        return Err(SdkError::Config(format!(
            "{}: not a directory (expected a directory holding the {title} files train-images-idx3-ubyte, \
             train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each optionally .gz)",
            dir.display()
        )));
    }
    let train = read_part(&dir, "train")?;
    let val = read_part(&dir, "t10k")?;
    if (train.height, train.width) != (val.height, val.width) {
        return Err(SdkError::Config(format!(
            "{}: training images are {}x{} but test (t10k) images are {}x{}",
            dir.display(),
            train.height,
            train.width,
            val.height,
            val.width
        )));
    }
    let info = DatasetInfo {
        name: format!("{name}:{arg}"),
        classes: i64::from(CLASSES),
        channels: 1,
        height: train.height as i64,
        width: train.width as i64,
        train_len: train.labels.len(),
        val_len: val.labels.len(),
    };
    Ok(Box::new(Idx { info, train, val }))
}

/// Reads `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` and checks they agree.
fn read_part(dir: &Path, prefix: &str) -> Result<Part> {
    let (images_path, images) = read_idx_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let (image_dims, images) = parse(&images_path, images, IMAGES_MAGIC)?;
    let (labels_path, labels) = read_idx_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (label_dims, labels) = parse(&labels_path, labels, LABELS_MAGIC)?;
    let (n, height, width) = (image_dims[0], image_dims[1], image_dims[2]);
    if n == 0 {
        return Err(SdkError::Config(format!("{}: holds no images", images_path.display())));
    }
    if height == 0 || width == 0 {
        return Err(SdkError::Config(format!("{}: images of {height}x{width} pixels", images_path.display())));
    }
    if label_dims[0] != n {
        return Err(SdkError::Config(format!(
            "{}: {} labels but {} holds {n} images",
            labels_path.display(),
            label_dims[0],
            images_path.display()
        )));
    }
    if let Some(i) = labels.iter().position(|&l| l >= CLASSES) {
        return Err(SdkError::Config(format!(
            "{}: label {i} is {}, expected 0..{CLASSES}",
            labels_path.display(),
            labels[i]
        )));
    }
    Ok(Part { images, labels, height, width })
}

/// Reads `dir/name`, or else `dir/name.gz` un-gzipped; returns the path read and its content.
fn read_idx_file(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let plain = dir.join(name);
    match std::fs::read(&plain) {
        Ok(bytes) => return Ok((plain, bytes)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(SdkError::Io { path: plain.display().to_string(), source: e })
        }
        Err(_) => {}
    }
    let gz = dir.join(format!("{name}.gz"));
    let file = match std::fs::File::open(&gz) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SdkError::Config(format!("{}: missing (expected {name} or {name}.gz)", plain.display())))
        }
        Err(e) => return Err(SdkError::Io { path: gz.display().to_string(), source: e }),
    };
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut bytes)
        .map_err(|e| SdkError::Config(format!("{}: not a valid gzip file ({e})", gz.display())))?;
    Ok((gz, bytes))
}

/// Checks the header of an idx file of unsigned bytes against `magic` and that the data has
/// exactly the size the dimensions say; returns the dimensions and the data without header.
fn parse(path: &Path, mut bytes: Vec<u8>, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let ndims = (magic & 0xff) as usize;
    let be32 = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let header = 4 + 4 * ndims;
    let found = be32(0).ok_or_else(|| {
        SdkError::Config(format!(
            "{}: {} bytes is too short for an idx header (expected magic number {magic:#010x})",
            path.display(),
            bytes.len()
        ))
    })?;
    if found != magic {
        return Err(SdkError::Config(format!(
            "{}: magic number {found:#010x}, expected {magic:#010x} (an idx file of unsigned bytes with {ndims} \
             dimension{})",
            path.display(),
            if ndims == 1 { "" } else { "s" }
        )));
    }
    let dims = (0..ndims)
        .map(|d| be32(4 + 4 * d).map(|v| v as usize))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| SdkError::Config(format!("{}: truncated idx header", path.display())))?;
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let data = bytes.len() - header;
    if expected != Some(data) {
        let shape = dims.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
        return Err(SdkError::Config(format!(
            "{}: {data} bytes of data, but the header says {shape} ({} bytes); truncated or corrupt file?",
            path.display(),
            expected.map_or_else(|| "too many".to_owned(), |e| e.to_string())
        )));
    }
    bytes.drain(..header);
    Ok((dims, bytes))
}

impl Dataset for Idx {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }

    fn load(&self, split: Split, index: usize, out: &mut [u8]) -> Result<i64> {
        let part = match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        };
        let Some(&label) = part.labels.get(index) else {
            return Err(SdkError::Config(format!(
                "{}: {} sample {index} is out of range ({} samples)",
                self.info.name,
                if split == Split::Train { "train" } else { "val" },
                part.labels.len()
            )));
        };
        let size = part.height * part.width;
        if out.len() != size {
            return Err(SdkError::Config(format!(
                "{}: output buffer holds {} bytes, expected {size} (1x{}x{})",
                self.info.name,
                out.len(),
                part.height,
                part.width
            )));
        }
        out.copy_from_slice(&part.images[index * size..(index + 1) * size]);
        Ok(i64::from(label))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::test_dir::TempDir;

    const H: usize = 4;
    const W: usize = 3;

    /// Pixels of image `seed`.
    fn image(seed: usize) -> Vec<u8> {
        (0..H * W).map(|i| (seed * 13 + i * 11) as u8).collect()
    }

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = magic.to_be_bytes().to_vec();
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    fn write(dir: &Path, name: &str, bytes: &[u8], gz: bool) {
        if gz {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(bytes).unwrap();
            std::fs::write(dir.join(format!("{name}.gz")), enc.finish().unwrap()).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    /// Writes `n` images with seeds `seed0..` and labels `(seed * 3) % 10`.
    fn write_part(dir: &Path, prefix: &str, n: usize, seed0: usize, gz: bool) {
        let pixels: Vec<u8> = (0..n).flat_map(|i| image(seed0 + i)).collect();
        let labels: Vec<u8> = (0..n).map(|i| ((seed0 + i) * 3 % 10) as u8).collect();
        write(
            dir,
            &format!("{prefix}-images-idx3-ubyte"),
            &idx(IMAGES_MAGIC, &[n as u32, H as u32, W as u32], &pixels),
            gz,
        );
        write(dir, &format!("{prefix}-labels-idx1-ubyte"), &idx(LABELS_MAGIC, &[n as u32], &labels), gz);
    }

    fn mnist_dir(tag: &str, gz: bool) -> TempDir {
        let dir = TempDir::new("idx", tag);
        write_part(&dir.0, "train", 5, 0, gz);
        write_part(&dir.0, "t10k", 2, 50, gz);
        dir
    }

    fn err(r: Result<Box<dyn Dataset>>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn check_reads_back(ds: &dyn Dataset) {
        let info = ds.info();
        assert_eq!((info.classes, info.channels, info.height, info.width), (10, 1, H as i64, W as i64));
        assert_eq!((info.train_len, info.val_len), (5, 2));
        let mut out = vec![0u8; info.sample_bytes()];
        for i in [0, 1, 4] {
            assert_eq!(ds.load(Split::Train, i, &mut out).unwrap(), (i * 3 % 10) as i64);
            assert_eq!(out, image(i));
        }
        for i in 0..2 {
            assert_eq!(ds.load(Split::Val, i, &mut out).unwrap(), ((50 + i) * 3 % 10) as i64);
            assert_eq!(out, image(50 + i));
        }
    }

    #[test]
    fn plain_idx_files_read_back_exactly_with_shape_from_the_header() {
        let dir = mnist_dir("plain", false);
        let ds = MNIST.open(dir.arg(), 28).unwrap();
        assert_eq!(ds.info().name, format!("mnist:{}", dir.arg()));
        check_reads_back(ds.as_ref());
    }

    #[test]
    fn gzipped_idx_files_read_back_exactly() {
        let dir = mnist_dir("gz", true);
        check_reads_back(FASHION_MNIST.open(dir.arg(), 28).unwrap().as_ref());
    }

    #[test]
    fn plain_and_gzipped_files_can_be_mixed_and_plain_wins() {
        let dir = mnist_dir("mixed", true);
        // A plain train-labels next to the gz one takes precedence: all labels 7.
        write(&dir.0, "train-labels-idx1-ubyte", &idx(LABELS_MAGIC, &[5], &[7; 5]), false);
        let ds = MNIST.open(dir.arg(), 28).unwrap();
        let mut out = vec![0u8; H * W];
        assert_eq!(ds.load(Split::Train, 1, &mut out).unwrap(), 7);
        assert_eq!(out, image(1));
    }

    #[test]
    fn both_providers_are_registered_under_their_spec_names() {
        let dir = mnist_dir("registry", false);
        for name in ["mnist", "fashion-mnist"] {
            let ds = donna_sdk::registry::dataset(&format!("{name}:{}", dir.arg()), 28).unwrap();
            assert_eq!(ds.info().name, format!("{name}:{}", dir.arg()));
        }
    }

    #[test]
    fn bad_magic_is_an_error_naming_the_file_and_expected_magic() {
        let dir = mnist_dir("magic", false);
        // Labels where images should be.
        write(&dir.0, "t10k-images-idx3-ubyte", &idx(LABELS_MAGIC, &[2], &[0, 1]), false);
        let msg = err(MNIST.open(dir.arg(), 28));
        assert!(msg.contains("t10k-images-idx3-ubyte: magic number 0x00000801, expected 0x00000803"), "{msg}");
    }

    #[test]
    fn mismatched_image_and_label_counts_are_an_error() {
        let dir = mnist_dir("count", false);
        write(&dir.0, "train-labels-idx1-ubyte", &idx(LABELS_MAGIC, &[4], &[1; 4]), false);
        let msg = err(MNIST.open(dir.arg(), 28));
        assert!(msg.contains("train-labels-idx1-ubyte: 4 labels but") && msg.contains("holds 5 images"), "{msg}");
    }

    #[test]
    fn truncated_data_and_header_are_errors() {
        let dir = mnist_dir("trunc", false);
        let path = dir.0.join("train-images-idx3-ubyte");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let msg = err(MNIST.open(dir.arg(), 28));
        assert!(
            msg.contains("train-images-idx3-ubyte: 59 bytes of data, but the header says 5x4x3 (60 bytes)"),
            "{msg}"
        );
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert!(err(MNIST.open(dir.arg(), 28)).contains("truncated idx header"));
        std::fs::write(&path, &bytes[..2]).unwrap();
        assert!(err(MNIST.open(dir.arg(), 28)).contains("too short"));
    }

    #[test]
    fn corrupt_gzip_is_an_error_naming_the_file() {
        let dir = mnist_dir("badgz", true);
        std::fs::write(dir.0.join("t10k-labels-idx1-ubyte.gz"), b"not gzip at all").unwrap();
        let msg = err(MNIST.open(dir.arg(), 28));
        assert!(msg.contains("t10k-labels-idx1-ubyte.gz: not a valid gzip file"), "{msg}");
    }

    #[test]
    fn out_of_range_label_is_an_error() {
        let dir = mnist_dir("label", false);
        write(&dir.0, "t10k-labels-idx1-ubyte", &idx(LABELS_MAGIC, &[2], &[3, 10]), false);
        let msg = err(MNIST.open(dir.arg(), 28));
        assert!(msg.contains("t10k-labels-idx1-ubyte: label 1 is 10, expected 0..10"), "{msg}");
    }

    #[test]
    fn missing_file_directory_and_arg_are_errors() {
        let dir = mnist_dir("missing", false);
        std::fs::remove_file(dir.0.join("t10k-images-idx3-ubyte")).unwrap();
        let msg = err(MNIST.open(dir.arg(), 28));
        assert!(
            msg.contains(
                "t10k-images-idx3-ubyte: missing (expected t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz)"
            ),
            "{msg}"
        );
        let gone = dir.0.join("nope");
        assert!(err(MNIST.open(gone.to_str().unwrap(), 28)).contains("nope: not a directory"));
        assert!(err(FASHION_MNIST.open("", 28)).contains("fashion-mnist: needs the directory"));
    }

    #[test]
    fn train_and_test_image_sizes_must_agree() {
        let dir = mnist_dir("sizes", false);
        write(&dir.0, "t10k-images-idx3-ubyte", &idx(IMAGES_MAGIC, &[2, 2, 2], &[0; 8]), false);
        assert!(err(MNIST.open(dir.arg(), 28)).contains("training images are 4x3 but test (t10k) images are 2x2"));
    }

    #[test]
    fn load_rejects_out_of_range_index_and_wrong_buffer() {
        let dir = mnist_dir("range", false);
        let ds = MNIST.open(dir.arg(), 28).unwrap();
        let mut out = vec![0u8; H * W];
        assert!(ds.load(Split::Val, 2, &mut out).is_err());
        assert!(ds.load(Split::Train, 0, &mut out[..5]).is_err());
    }
}
