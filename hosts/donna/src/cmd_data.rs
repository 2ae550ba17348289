//! `donna datasets` and `donna data`: what data is available and what it looks like.

use std::path::PathBuf;

use clap::Args;
use donna_sdk::data::{Normalization, Split};
use donna_sdk::registry;

use crate::table::render;

#[derive(Args)]
pub struct DataArgs {
    /// Dataset spec (see `donna datasets`).
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Resolution asked for (generated datasets produce it directly).
    #[arg(long, default_value_t = 32)]
    resolution: i64,
    /// Write a PNG grid of the first training images, sorted by class, to this file.
    #[arg(long, value_name = "FILE.png")]
    preview: Option<PathBuf>,
    /// Images per class in the preview.
    #[arg(long, default_value_t = 8)]
    per_class: usize,
}

pub fn datasets() -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> =
        registry::datasets().iter().map(|d| vec![d.name().to_owned(), d.summary().to_owned()]).collect();
    print!("{}", render(&["dataset", "spec and summary"], &rows));
    Ok(())
}

pub fn info(a: &DataArgs) -> anyhow::Result<()> {
    let ds = registry::dataset(&a.data, a.resolution)?;
    let info = ds.info();
    let norm = Normalization::estimate(ds.as_ref(), 2048)?;
    println!(
        "{}: {} classes, {}x{}x{} images, {} train / {} val",
        info.name, info.classes, info.channels, info.height, info.width, info.train_len, info.val_len
    );
    let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(", ");
    println!("mean [{}], std [{}] (from up to 2048 training images)", fmt(&norm.mean), fmt(&norm.std));
    if let Some(path) = &a.preview {
        write_preview(ds.as_ref(), a.per_class, path)?;
        println!("preview: {}", path.display());
    }
    Ok(())
}

fn write_preview(ds: &dyn donna_sdk::data::Dataset, per_class: usize, path: &PathBuf) -> anyhow::Result<()> {
    let info = ds.info();
    let (c, h, w) = (info.channels as usize, info.height as usize, info.width as usize);
    let classes = info.classes.min(20) as usize;
    let mut grid = image::RgbImage::new((w * per_class) as u32, (h * classes) as u32);
    let mut filled = vec![0usize; classes];
    let mut buf = vec![0u8; info.sample_bytes()];
    for i in 0..info.train_len {
        if filled.iter().all(|&f| f >= per_class) {
            break;
        }
        let label = ds.load(Split::Train, i, &mut buf)? as usize;
        if label >= classes || filled[label] >= per_class {
            continue;
        }
        let (gx, gy) = (filled[label] * w, label * h);
        for y in 0..h {
            for x in 0..w {
                let px = |ch: usize| buf[ch.min(c - 1) * h * w + y * w + x];
                grid.put_pixel((gx + x) as u32, (gy + y) as u32, image::Rgb([px(0), px(1), px(2)]));
            }
        }
        filled[label] += 1;
    }
    grid.save(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}
