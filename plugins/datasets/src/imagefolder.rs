//! ImageNet-style folders of JPEG and PNG files, one subdirectory per class.
//!
//! ```text
//! PATH/train/<class>/*.{jpg,jpeg,png}   training images
//! PATH/val/<class>/*.{jpg,jpeg,png}     validation images
//! ```
//!
//! This is the layout ImageNet and most custom datasets are distributed in (or easily put in),
//! and the one torchvision's `ImageFolder` reads. The classes are the subdirectories of `train/`
//! sorted by name, so label `i` is the `i`-th name; `val/` may only use those names (a missing
//! class there is fine). Files are sorted by name too, so sample indices, and with them the
//! epoch order, are the same on every machine. Extensions are matched case-insensitively;
//! other files and hidden entries (names starting with `.`, such as `.ipynb_checkpoints`) are
//! ignored.
//!
//! Such datasets can be far larger than memory, so opening only lists the files;
//! [`Dataset::load`] (called in parallel by the SDK's loader) reads and decodes one image,
//! converts it to RGB, resizes its shorter side to the run's resolution (triangle filter) and
//! crops the centre square, the usual ImageNet evaluation transform. The dataset's images are
//! therefore `resolution x resolution`, and the loader does not resize them again.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use donna_sdk::data::{Dataset, DatasetInfo, DatasetProvider, Split};
use donna_sdk::{Result, SdkError};
use image::imageops::FilterType;
use rayon::prelude::*;

/// Largest resolution accepted, far above any training resolution, to catch typos before they
/// turn into huge allocations.
const MAX_RESOLUTION: i64 = 8192;

/// Opens `imagefolder:PATH`, a directory with `train/<class>/` and `val/<class>/` image folders.
pub struct ImageFolder;

/// The registered image-folder provider.
pub static IMAGE_FOLDER: ImageFolder = ImageFolder;

impl DatasetProvider for ImageFolder {
    fn name(&self) -> &str {
        "imagefolder"
    }

    fn summary(&self) -> &str {
        "imagefolder:PATH  ImageNet-style PATH/train/<class>/*.{jpg,jpeg,png} and PATH/val/<class>/..., \
         decoded on demand, shorter side resized and centre-cropped to the run's resolution, RGB"
    }

    fn open(&self, arg: &str, resolution: i64) -> Result<Box<dyn Dataset>> {
        if arg.is_empty() {
            return Err(SdkError::Config(
                "imagefolder: needs the directory holding train/<class>/ and val/<class>/, as in imagefolder:/data/imagenet"
                    .to_owned(),
            ));
        }
        if !(1..=MAX_RESOLUTION).contains(&resolution) {
            return Err(SdkError::Config(format!(
                "imagefolder:{arg}: resolution {resolution} is outside 1..={MAX_RESOLUTION}"
            )));
        }
        let root = PathBuf::from(arg);
        if !root.is_dir() {
            return Err(SdkError::Config(format!(
                "{}: not a directory (expected a directory holding train/<class>/*.jpg|png and val/<class>/...)",
                root.display()
            )));
        }
        let train_dir = root.join("train");
        let classes = class_dirs(&train_dir)?;
        if classes.is_empty() {
            return Err(SdkError::Config(format!(
                "{}: no class subdirectories (expected train/<class>/*.jpg|png)",
                train_dir.display()
            )));
        }
        let train = list_split(&train_dir, &classes, &classes)?;
        if train.is_empty() {
            return Err(SdkError::Config(format!(
                "{}: no .jpg, .jpeg or .png files in its {} class subdirectories",
                train_dir.display(),
                classes.len()
            )));
        }
        let val_dir = root.join("val");
        let val_classes = class_dirs(&val_dir)?;
        if let Some(unknown) = val_classes.iter().find(|c| !classes.contains(c)) {
            return Err(SdkError::Config(format!(
                "{}: class `{}` is not among the {} classes of {}",
                val_dir.join(unknown).display(),
                unknown.to_string_lossy(),
                classes.len(),
                train_dir.display()
            )));
        }
        if val_classes.is_empty() {
            return Err(SdkError::Config(format!(
                "{}: no class subdirectories (expected val/<class>/*.jpg|png with the class names of train/; \
                 the ImageNet validation images must be sorted into class folders first)",
                val_dir.display()
            )));
        }
        let val = list_split(&val_dir, &val_classes, &classes)?;
        if val.is_empty() {
            return Err(SdkError::Config(format!(
                "{}: no .jpg, .jpeg or .png files in its class subdirectories",
                val_dir.display()
            )));
        }
        let info = DatasetInfo {
            name: format!("imagefolder:{arg}"),
            classes: classes.len() as i64,
            channels: 3,
            height: resolution,
            width: resolution,
            train_len: train.len(),
            val_len: val.len(),
        };
        Ok(Box::new(Folder { info, side: resolution as u32, train, val }))
    }
}

/// Whether a directory entry is hidden (and so ignored).
fn hidden(name: &OsString) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Reads the entries of `dir`, mapping errors to ones naming it.
fn entries(dir: &Path) -> Result<Vec<(OsString, PathBuf)>> {
    let io = |source| SdkError::Io { path: dir.display().to_string(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if !hidden(&name) {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The sorted names of the (non-hidden) subdirectories of `dir`, which must exist.
fn class_dirs(dir: &Path) -> Result<Vec<OsString>> {
    if !dir.is_dir() {
        return Err(SdkError::Config(format!(
            "{}: missing or not a directory (expected <class>/*.jpg|png subdirectories)",
            dir.display()
        )));
    }
    // `is_dir` follows symbolic links, so linked class folders count.
    Ok(entries(dir)?.into_iter().filter(|(_, path)| path.is_dir()).map(|(name, _)| name).collect())
}

/// Whether `path` has a `.jpg`, `.jpeg` or `.png` extension, in any case.
fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Lists the images of `dir/<class>/` for each of `present` (sorted), labelled by the class's
/// position in `classes`, in class then file-name order.
fn list_split(dir: &Path, present: &[OsString], classes: &[OsString]) -> Result<Vec<(PathBuf, i64)>> {
    let per_class = present
        .par_iter()
        .map(|class| {
            let label = classes.iter().position(|c| c == class).unwrap_or_default() as i64;
            let files = entries(&dir.join(class))?;
            Ok(files.into_iter().filter(|(_, p)| is_image(p) && p.is_file()).map(|(_, p)| (p, label)).collect())
        })
        .collect::<Result<Vec<Vec<_>>>>()?;
    Ok(per_class.into_iter().flatten().collect())
}

/// An opened image folder: the file list, decoded on demand.
struct Folder {
    info: DatasetInfo,
    /// Side of the delivered squares.
    side: u32,
    train: Vec<(PathBuf, i64)>,
    val: Vec<(PathBuf, i64)>,
}

impl Dataset for Folder {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }

    fn load(&self, split: Split, index: usize, out: &mut [u8]) -> Result<i64> {
        let files = match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        };
        let Some((path, label)) = files.get(index) else {
            return Err(SdkError::Config(format!(
                "{}: {} sample {index} is out of range ({} samples)",
                self.info.name,
                if split == Split::Train { "train" } else { "val" },
                files.len()
            )));
        };
        if out.len() != self.info.sample_bytes() {
            return Err(SdkError::Config(format!(
                "{}: output buffer holds {} bytes, expected {} (3x{}x{})",
                self.info.name,
                out.len(),
                self.info.sample_bytes(),
                self.side,
                self.side
            )));
        }
        let bytes = std::fs::read(path).map_err(|source| SdkError::Io { path: path.display().to_string(), source })?;
        let image = image::load_from_memory(&bytes)
            .map_err(|e| SdkError::Config(format!("{}: cannot decode image ({e})", path.display())))?;
        write_centre_crop(&image.to_rgb8(), self.side, out);
        Ok(*label)
    }
}

/// Resizes `rgb` so its shorter side is `side`, and writes the centre `side x side` square
/// into `out` as three planes (CHW).
fn write_centre_crop(rgb: &image::RgbImage, side: u32, out: &mut [u8]) {
    let (w, h) = rgb.dimensions();
    // Shorter side to `side`, the other scaled to keep the aspect ratio (rounded, at least `side`).
    let scale =
        |long: u32, short: u32| ((u64::from(long) * u64::from(side) + u64::from(short) / 2) / u64::from(short)) as u32;
    let (nw, nh) = if w <= h { (side, scale(h, w).max(side)) } else { (scale(w, h).max(side), side) };
    let resized;
    let img = if (nw, nh) == (w, h) {
        rgb
    } else {
        resized = image::imageops::resize(rgb, nw, nh, FilterType::Triangle);
        &resized
    };
    let (x0, y0) = ((nw - side) / 2, (nh - side) / 2);
    let (side, nw) = (side as usize, nw as usize);
    let raw = img.as_raw();
    let plane = side * side;
    for y in 0..side {
        let row = ((y0 as usize + y) * nw + x0 as usize) * 3;
        for x in 0..side {
            let px = &raw[row + x * 3..row + x * 3 + 3];
            for c in 0..3 {
                out[c * plane + y * side + x] = px[c];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use image::{Rgb, RgbImage};

    use super::*;
    use crate::test_dir::TempDir;

    /// Writes a solid `colour` PNG of `w x h` at `rel`.
    fn solid(dir: &TempDir, rel: &str, w: u32, h: u32, colour: [u8; 3]) {
        let path = dir.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_pixel(w, h, Rgb(colour)).save(&path).unwrap();
    }

    const RED: [u8; 3] = [255, 0, 0];
    const GREEN: [u8; 3] = [0, 200, 0];
    const BLUE: [u8; 3] = [10, 20, 250];
    const GREY: [u8; 3] = [90, 90, 90];

    /// Three classes written out of order (`cat`, `ant`, `bee`), a few non-image files, a
    /// hidden directory, and a val split without `bee`.
    fn folder(tag: &str) -> TempDir {
        let dir = TempDir::new("imagefolder", tag);
        solid(&dir, "train/cat/b.png", 6, 4, BLUE);
        solid(&dir, "train/cat/a.PNG", 6, 4, GREY);
        solid(&dir, "train/ant/x.png", 4, 6, RED);
        solid(&dir, "train/bee/only.png", 5, 5, GREEN);
        solid(&dir, "train/.ipynb_checkpoints/skip.png", 4, 4, GREEN);
        solid(&dir, "val/cat/v.png", 8, 4, GREY);
        solid(&dir, "val/ant/w.png", 4, 4, RED);
        std::fs::write(dir.0.join("train/cat/notes.txt"), b"not an image").unwrap();
        std::fs::write(dir.0.join("train/ant/.hidden.png"), b"junk").unwrap();
        dir
    }

    fn err(r: Result<Box<dyn Dataset>>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn solid_chw(colour: [u8; 3], side: usize) -> Vec<u8> {
        colour.iter().flat_map(|&c| std::iter::repeat_n(c, side * side)).collect()
    }

    #[test]
    fn classes_are_sorted_subdirectories_and_labels_follow_them() {
        let dir = folder("classes");
        let ds = IMAGE_FOLDER.open(dir.arg(), 4).unwrap();
        let info = ds.info();
        assert_eq!(info.name, format!("imagefolder:{}", dir.arg()));
        assert_eq!((info.classes, info.channels, info.height, info.width), (3, 3, 4, 4));
        assert_eq!((info.train_len, info.val_len), (4, 2));
        let mut out = vec![0u8; info.sample_bytes()];
        // Sorted: ant/x (0), bee/only (1), cat/a.PNG (2), cat/b (2).
        let expect_train = [(0, RED), (1, GREEN), (2, GREY), (2, BLUE)];
        for (i, (label, colour)) in expect_train.into_iter().enumerate() {
            assert_eq!(ds.load(Split::Train, i, &mut out).unwrap(), label, "train {i}");
            assert_eq!(out, solid_chw(colour, 4), "train {i}");
        }
        for (i, (label, colour)) in [(0, RED), (2, GREY)].into_iter().enumerate() {
            assert_eq!(ds.load(Split::Val, i, &mut out).unwrap(), label, "val {i}");
            assert_eq!(out, solid_chw(colour, 4), "val {i}");
        }
    }

    #[test]
    fn registered_and_sized_by_the_runs_resolution() {
        let dir = folder("registry");
        let ds = donna_sdk::registry::dataset(&format!("imagefolder:{}", dir.arg()), 7).unwrap();
        assert_eq!((ds.info().height, ds.info().width), (7, 7));
        let mut out = vec![0u8; 3 * 7 * 7];
        assert_eq!(ds.load(Split::Train, 1, &mut out).unwrap(), 1);
        assert_eq!(out, solid_chw(GREEN, 7), "5x5 upscaled to 7x7 stays solid");
    }

    #[test]
    fn shorter_side_is_resized_and_centre_cropped_into_chw_planes() {
        // 8x4: left quarter red, middle half green, right quarter blue. Shorter side 4 already
        // fits resolution 4, so no resampling: the crop is exactly the middle (green) 4 columns.
        let mut img = RgbImage::from_pixel(8, 4, Rgb(GREEN));
        for y in 0..4 {
            for x in 0..2 {
                img.put_pixel(x, y, Rgb(RED));
                img.put_pixel(x + 6, y, Rgb(BLUE));
            }
        }
        let mut out = vec![0u8; 3 * 16];
        write_centre_crop(&img, 4, &mut out);
        assert_eq!(out, solid_chw(GREEN, 4));
        // Tall gradient 2x6 → 4x12 → middle 4 rows; the red plane follows x, blue follows y.
        let grad = RgbImage::from_fn(2, 6, |x, y| Rgb([(x * 100) as u8, 7, (y * 40) as u8]));
        let mut out = vec![0u8; 3 * 16];
        write_centre_crop(&grad, 4, &mut out);
        let (r, g, b) = (&out[..16], &out[16..32], &out[32..]);
        assert!(g.iter().all(|&v| v == 7), "{g:?}");
        assert!(r[0] < r[3] && r[4] < r[7], "red increases along x: {r:?}");
        assert!(b[0] < b[12] && b[1] < b[13], "blue increases along y: {b:?}");
        assert!(r.chunks(4).all(|row| row == &r[..4]), "red is constant down columns: {r:?}");
    }

    #[test]
    fn jpeg_files_decode() {
        let dir = folder("jpeg");
        let path = dir.0.join("train/bee/photo.JPG");
        RgbImage::from_pixel(8, 8, Rgb([200, 100, 50])).save_with_format(&path, image::ImageFormat::Jpeg).unwrap();
        let ds = IMAGE_FOLDER.open(dir.arg(), 4).unwrap();
        assert_eq!(ds.info().train_len, 5);
        let mut out = vec![0u8; 48];
        // Sorted within bee: only.png, photo.JPG.
        assert_eq!(ds.load(Split::Train, 2, &mut out).unwrap(), 1);
        for (c, want) in [200i32, 100, 50].into_iter().enumerate() {
            assert!(out[c * 16..(c + 1) * 16].iter().all(|&v| (i32::from(v) - want).abs() <= 4), "{out:?}");
        }
    }

    #[test]
    fn corrupt_image_errors_on_load_naming_the_file() {
        let dir = folder("corrupt");
        std::fs::write(dir.0.join("train/ant/y.png"), b"garbage, not a png").unwrap();
        let ds = IMAGE_FOLDER.open(dir.arg(), 4).expect("opening only lists files");
        let mut out = vec![0u8; 48];
        let msg = ds.load(Split::Train, 1, &mut out).unwrap_err().to_string();
        assert!(msg.contains("ant/y.png: cannot decode image"), "{msg}");
        assert_eq!(ds.load(Split::Train, 0, &mut out).unwrap(), 0, "other files still load");
    }

    #[test]
    fn val_class_absent_from_train_is_an_error() {
        let dir = folder("valclass");
        solid(&dir, "val/dog/d.png", 4, 4, RED);
        let msg = err(IMAGE_FOLDER.open(dir.arg(), 4));
        assert!(msg.contains("val/dog: class `dog` is not among the 3 classes of"), "{msg}");
    }

    #[test]
    fn missing_directories_and_empty_train_are_errors() {
        let dir = TempDir::new("imagefolder", "missing");
        assert!(err(IMAGE_FOLDER.open(dir.0.join("nope").to_str().unwrap(), 4)).contains("nope: not a directory"));
        assert!(err(IMAGE_FOLDER.open(dir.arg(), 4)).contains("train: missing or not a directory"));
        std::fs::create_dir_all(dir.0.join("train")).unwrap();
        assert!(err(IMAGE_FOLDER.open(dir.arg(), 4)).contains("train: no class subdirectories"));
        std::fs::create_dir_all(dir.0.join("train/cls")).unwrap();
        std::fs::write(dir.0.join("train/cls/readme.txt"), b"x").unwrap();
        assert!(err(IMAGE_FOLDER.open(dir.arg(), 4)).contains("train: no .jpg, .jpeg or .png files"));
        solid(&dir, "train/cls/a.png", 4, 4, RED);
        assert!(err(IMAGE_FOLDER.open(dir.arg(), 4)).contains("val: missing or not a directory"));
        solid(&dir, "val/flat.png", 4, 4, RED);
        assert!(err(IMAGE_FOLDER.open(dir.arg(), 4)).contains("sorted into class folders"));
        solid(&dir, "val/cls/b.png", 4, 4, RED);
        assert!(IMAGE_FOLDER.open(dir.arg(), 4).is_ok());
        assert!(err(IMAGE_FOLDER.open("", 4)).contains("needs the directory"));
        assert!(err(IMAGE_FOLDER.open(dir.arg(), 0)).contains("resolution 0"));
    }

    #[test]
    fn load_rejects_out_of_range_index_and_wrong_buffer() {
        let dir = folder("range");
        let ds = IMAGE_FOLDER.open(dir.arg(), 4).unwrap();
        let mut out = vec![0u8; 48];
        assert!(ds.load(Split::Val, 2, &mut out).is_err());
        assert!(ds.load(Split::Train, 0, &mut out[..47]).is_err());
    }
}
