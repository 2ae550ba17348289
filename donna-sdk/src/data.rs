//! Datasets and the batch loader that feeds training.
//!
//! A [`Dataset`] only decodes one sample into bytes; everything a training loop needs on top
//! (deterministic shuffling by seed and epoch, augmentation, normalisation, resizing, batching,
//! moving to the device) is done here, once for every format. The loader prepares the next
//! batches on a background thread, decoding samples in parallel with rayon, while libtorch
//! computes on the current one.
//!
//! Reproducibility: the order of an epoch depends only on `(seed, epoch)` and a sample's
//! augmentation only on `(seed, epoch, index)`, never on thread scheduling, so an interrupted
//! run that resumes at epoch `e` sees exactly the batches an uninterrupted run would.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::error::{Result, SdkError};
use crate::rng::SplitMix64;

/// Which part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training images.
    Train,
    /// Held-out validation images.
    Val,
}

/// The shape and size of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The spec it was opened from (`synthetic`, `cifar10:/data/cifar`).
    pub name: String,
    /// Number of classes; labels are `0..classes`.
    pub classes: i64,
    /// Channels per image (3 RGB, 1 grey).
    pub channels: i64,
    /// Stored image height.
    pub height: i64,
    /// Stored image width.
    pub width: i64,
    /// Training images.
    pub train_len: usize,
    /// Validation images.
    pub val_len: usize,
}

impl DatasetInfo {
    /// Images in `split`.
    pub fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train_len,
            Split::Val => self.val_len,
        }
    }

    /// Bytes of one decoded sample (`channels * height * width`).
    pub fn sample_bytes(&self) -> usize {
        (self.channels * self.height * self.width) as usize
    }
}

/// A source of labelled images.
pub trait Dataset: Send + Sync {
    /// Shape and size.
    fn info(&self) -> &DatasetInfo;

    /// Decodes sample `index` of `split` into `out` (`channels x height x width` bytes, channel
    /// planes one after the other) and returns its label.
    fn load(&self, split: Split, index: usize, out: &mut [u8]) -> Result<i64>;
}

/// Opens datasets of one kind.
pub trait DatasetProvider: Send + Sync {
    /// Registered name (`synthetic`, `cifar10`, ...).
    fn name(&self) -> &str;
    /// One line for `donna datasets`, including the spec's form.
    fn summary(&self) -> &str;
    /// Opens `arg` (what follows `name:`); `resolution` is the size the run wants, which a
    /// generated dataset can produce directly (file formats are resized by the loader).
    fn open(&self, arg: &str, resolution: i64) -> Result<Box<dyn Dataset>>;
}

/// Random crop with zero padding and horizontal flip, as in the CIFAR and ImageNet recipes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Pixels of padding around the image before cropping back to size (0 = no crop).
    pub crop_padding: i64,
    /// Flip left-right with probability 1/2.
    pub flip: bool,
}

/// Per-channel mean and standard deviation of the training images, in [0, 1] units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Means.
    pub mean: Vec<f64>,
    /// Standard deviations.
    pub std: Vec<f64>,
}

impl Normalization {
    /// Estimates the statistics from up to `samples` training images spread evenly over the set.
    pub fn estimate(ds: &dyn Dataset, samples: usize) -> Result<Self> {
        let info = ds.info();
        let n = info.train_len.min(samples).max(1);
        let stride = (info.train_len / n).max(1);
        let plane = (info.height * info.width) as usize;
        let sums = (0..n)
            .into_par_iter()
            .map(|i| {
                let mut buf = vec![0u8; info.sample_bytes()];
                ds.load(Split::Train, i * stride, &mut buf)?;
                let mut s = vec![(0f64, 0f64); info.channels as usize];
                for (c, chunk) in buf.chunks(plane).enumerate() {
                    for &b in chunk {
                        let x = f64::from(b) / 255.0;
                        s[c].0 += x;
                        s[c].1 += x * x;
                    }
                }
                Ok(s)
            })
            .collect::<Result<Vec<_>>>()?;
        let count = (n * plane) as f64;
        let mut mean = vec![0.0; info.channels as usize];
        let mut sq = vec![0.0; info.channels as usize];
        for s in &sums {
            for (c, (a, b)) in s.iter().enumerate() {
                mean[c] += a / count;
                sq[c] += b / count;
            }
        }
        let std = mean.iter().zip(&sq).map(|(m, q)| (q - m * m).max(1e-6).sqrt()).collect();
        Ok(Self { mean, std })
    }
}

/// How to batch one pass over a split.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Side of the square images delivered (resized when the dataset's differs).
    pub resolution: i64,
    /// Augmentation, or none (evaluation).
    pub augment: Option<Augment>,
    /// Shuffle the order (by seed and epoch).
    pub shuffle: bool,
    /// Drop a last incomplete batch (training) or keep it (evaluation).
    pub drop_last: bool,
    /// Seed of order and augmentation.
    pub seed: u64,
    /// Epoch number, part of the seed of order and augmentation.
    pub epoch: u64,
    /// Use only the first `limit` images of the split (after shuffling), if set.
    pub limit: Option<usize>,
    /// Batches prepared ahead.
    pub prefetch: usize,
    /// Where the tensors go.
    pub device: Device,
}

/// One batch: normalised float images `[n, c, h, w]` and int64 labels `[n]`.
pub struct Batch {
    /// Images.
    pub images: Tensor,
    /// Labels.
    pub labels: Tensor,
}

/// The sample order of one epoch.
pub fn epoch_order(len: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if shuffle {
        let mut rng = SplitMix64::derive(seed, &format!("order/{epoch}"));
        for i in (1..len).rev() {
            order.swap(i, rng.below(i + 1));
        }
    }
    order
}

/// Crops (with zero padding) and flips one CHW sample in place.
fn augment_sample(
    buf: &mut [u8],
    scratch: &mut Vec<u8>,
    c: usize,
    h: usize,
    w: usize,
    aug: &Augment,
    rng: &mut SplitMix64,
) {
    let p = aug.crop_padding.max(0) as usize;
    let (dy, dx) = if p > 0 {
        (rng.below(2 * p + 1) as isize - p as isize, rng.below(2 * p + 1) as isize - p as isize)
    } else {
        (0, 0)
    };
    let flip = aug.flip && rng.below(2) == 1;
    if dy == 0 && dx == 0 && !flip {
        return;
    }
    scratch.clear();
    scratch.extend_from_slice(buf);
    for ch in 0..c {
        for y in 0..h {
            let sy = y as isize + dy;
            for x in 0..w {
                let xx = if flip { w - 1 - x } else { x };
                let sx = xx as isize + dx;
                let v = if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                    scratch[ch * h * w + sy as usize * w + sx as usize]
                } else {
                    0
                };
                buf[ch * h * w + y * w + x] = v;
            }
        }
    }
}

/// A batch as plain memory: what the background thread prepares. Tensors are only made on the
/// consuming thread, because libtorch calls from a second thread start a second OpenMP pool
/// whose busy-waiting slows training by a third on a 2-core machine.
pub struct RawBatch {
    /// Normalised pixels, `n x h x w x c` (channels-last).
    pub pixels: Vec<f32>,
    /// Labels.
    pub labels: Vec<i64>,
    /// Image height and width as stored.
    pub height: i64,
    /// Width.
    pub width: i64,
    /// Channels.
    pub channels: i64,
}

impl RawBatch {
    /// Turns the batch into tensors on `cfg.device`, resized to `cfg.resolution`.
    pub fn into_batch(self, cfg: &LoaderConfig) -> Batch {
        let n = self.labels.len() as i64;
        let nhwc = Tensor::from_slice(&self.pixels).view([n, self.height, self.width, self.channels]);
        // A permuted view of NHWC memory is an NCHW tensor in channels-last layout.
        let mut images = nhwc.permute([0, 3, 1, 2]);
        if self.height != cfg.resolution || self.width != cfg.resolution {
            images = crate::network::to_channels_last(&images.upsample_bilinear2d(
                [cfg.resolution, cfg.resolution],
                false,
                None,
                None,
            ));
        }
        Batch { images: images.to_device(cfg.device), labels: Tensor::from_slice(&self.labels).to_device(cfg.device) }
    }
}

/// Decodes, augments and normalises the samples `indices` (in parallel, without libtorch).
pub fn make_raw_batch(
    ds: &dyn Dataset,
    split: Split,
    indices: &[usize],
    cfg: &LoaderConfig,
    norm: &Normalization,
) -> Result<RawBatch> {
    let info = ds.info();
    let (c, h, w) = (info.channels as usize, info.height as usize, info.width as usize);
    let per = c * h * w;
    let scale: Vec<f32> = norm.std.iter().map(|s| (1.0 / (255.0 * s)) as f32).collect();
    let shift: Vec<f32> = norm.mean.iter().zip(&norm.std).map(|(m, s)| (m / s) as f32).collect();
    if scale.len() != c {
        return Err(SdkError::Config(format!("{}: normalisation has {} channels, images {c}", info.name, scale.len())));
    }
    let mut pixels = vec![0f32; per * indices.len()];
    let labels = pixels
        .par_chunks_mut(per)
        .zip(indices.par_iter())
        .map_init(
            || (vec![0u8; per], Vec::new()),
            |(buf, scratch), (out, &index)| {
                let label = ds.load(split, index, buf)?;
                if !(0..info.classes).contains(&label) {
                    return Err(SdkError::Config(format!(
                        "{}: sample {index} has label {label}, outside 0..{}",
                        info.name, info.classes
                    )));
                }
                if let Some(aug) = &cfg.augment {
                    let mut rng = SplitMix64::derive(cfg.seed, &format!("augment/{}/{index}", cfg.epoch));
                    augment_sample(buf, scratch, c, h, w, aug, &mut rng);
                }
                for ch in 0..c {
                    for (p, &b) in buf[ch * h * w..(ch + 1) * h * w].iter().enumerate() {
                        out[p * c + ch] = f32::from(b) * scale[ch] - shift[ch];
                    }
                }
                Ok(label)
            },
        )
        .collect::<Result<Vec<i64>>>()?;
    Ok(RawBatch { pixels, labels, height: h as i64, width: w as i64, channels: c as i64 })
}

/// Decodes, augments and converts the samples `indices` into a batch.
pub fn make_batch(
    ds: &dyn Dataset,
    split: Split,
    indices: &[usize],
    cfg: &LoaderConfig,
    norm: &Normalization,
) -> Result<Batch> {
    Ok(make_raw_batch(ds, split, indices, cfg, norm)?.into_batch(cfg))
}

/// Batches of one pass over a split, prepared ahead on a background thread.
pub struct Loader {
    rx: Option<Receiver<Result<RawBatch>>>,
    cfg: LoaderConfig,
    worker: Option<JoinHandle<()>>,
    batches: usize,
}

impl Loader {
    /// Starts preparing the batches of `split` under `cfg`.
    pub fn new(ds: Arc<dyn Dataset>, split: Split, cfg: LoaderConfig, norm: Normalization) -> Self {
        let len = ds.info().len(split);
        let mut order = epoch_order(len, cfg.shuffle, cfg.seed, cfg.epoch);
        if let Some(limit) = cfg.limit {
            order.truncate(limit);
        }
        let bs = cfg.batch_size.max(1);
        let chunks: Vec<Vec<usize>> =
            order.chunks(bs).filter(|c| !(cfg.drop_last && c.len() < bs)).map(<[usize]>::to_vec).collect();
        let batches = chunks.len();
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let worker_cfg = cfg.clone();
        let worker = std::thread::spawn(move || {
            for chunk in chunks {
                let batch = make_raw_batch(ds.as_ref(), split, &chunk, &worker_cfg, &norm);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        Self { rx: Some(rx), cfg, worker: Some(worker), batches }
    }

    /// Number of batches this pass yields.
    pub fn len(&self) -> usize {
        self.batches
    }

    /// Whether the pass is empty.
    pub fn is_empty(&self) -> bool {
        self.batches == 0
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        let raw = self.rx.as_ref()?.recv().ok()?;
        Some(raw.map(|r| r.into_batch(&self.cfg)))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel stops the worker at its next send.
        self.rx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4x4 grey images whose pixels encode the index, label = index % 3.
    struct Counting(DatasetInfo);

    impl Dataset for Counting {
        fn info(&self) -> &DatasetInfo {
            &self.0
        }
        fn load(&self, _split: Split, index: usize, out: &mut [u8]) -> Result<i64> {
            for (i, b) in out.iter_mut().enumerate() {
                *b = (index * 16 + i) as u8;
            }
            Ok(index as i64 % 3)
        }
    }

    fn counting() -> Arc<dyn Dataset> {
        Arc::new(Counting(DatasetInfo {
            name: "counting".into(),
            classes: 3,
            channels: 1,
            height: 4,
            width: 4,
            train_len: 10,
            val_len: 5,
        }))
    }

    fn cfg(epoch: u64) -> LoaderConfig {
        LoaderConfig {
            batch_size: 4,
            resolution: 4,
            augment: Some(Augment { crop_padding: 1, flip: true }),
            shuffle: true,
            drop_last: true,
            seed: 3,
            epoch,
            limit: None,
            prefetch: 2,
            device: Device::Cpu,
        }
    }

    fn plain() -> Normalization {
        Normalization { mean: vec![0.0], std: vec![1.0] }
    }

    #[test]
    fn epochs_are_reproducible_and_differ_from_each_other() {
        let ds = counting();
        let run = |epoch| -> Vec<Vec<f32>> {
            Loader::new(ds.clone(), Split::Train, cfg(epoch), plain())
                .map(|b| Vec::<f32>::try_from(b.unwrap().images.flatten(0, -1)).unwrap())
                .collect()
        };
        assert_eq!(run(0).len(), 2, "10 images in batches of 4, last dropped");
        assert_eq!(run(0), run(0));
        assert_ne!(run(0), run(1));
    }

    #[test]
    fn evaluation_keeps_order_and_last_batch_and_labels() {
        let c = LoaderConfig { augment: None, shuffle: false, drop_last: false, ..cfg(0) };
        let batches: Vec<Batch> = Loader::new(counting(), Split::Val, c, plain()).map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(Vec::<i64>::try_from(&batches[1].labels).unwrap(), vec![1]);
        let first = Vec::<f32>::try_from(batches[0].images.get(1).flatten(0, -1)).unwrap();
        assert!((first[0] - 16.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn crop_and_flip_move_pixels_and_pad_with_zero() {
        let mut buf: Vec<u8> = (1..=9).collect();
        let mut scratch = Vec::new();
        // Find a draw that flips without shifting, and one that shifts.
        let aug = Augment { crop_padding: 1, flip: true };
        let mut seen_flip = false;
        let mut seen_pad = false;
        for seed in 0..64 {
            let mut b = buf.clone();
            augment_sample(&mut b, &mut scratch, 1, 3, 3, &aug, &mut SplitMix64::new(seed));
            seen_flip |= b == vec![3, 2, 1, 6, 5, 4, 9, 8, 7];
            seen_pad |= b.contains(&0);
            let mut sorted = b.clone();
            sorted.retain(|&x| x != 0);
            assert!(sorted.iter().all(|x| (1..=9).contains(x)));
        }
        assert!(seen_flip && seen_pad);
        augment_sample(
            &mut buf,
            &mut scratch,
            1,
            3,
            3,
            &Augment { crop_padding: 0, flip: false },
            &mut SplitMix64::new(1),
        );
        assert_eq!(buf, (1..=9).collect::<Vec<u8>>());
    }

    #[test]
    fn resizing_and_normalization_apply() {
        let c = LoaderConfig { resolution: 8, augment: None, shuffle: false, ..cfg(0) };
        let norm = Normalization { mean: vec![0.5], std: vec![0.25] };
        let b = Loader::new(counting(), Split::Train, c, norm).next().unwrap().unwrap();
        assert_eq!(b.images.size(), vec![4, 1, 8, 8]);
        let stats = Normalization::estimate(counting().as_ref(), 100).unwrap();
        assert_eq!(stats.mean.len(), 1);
        assert!(stats.std[0] > 0.0);
    }
}
