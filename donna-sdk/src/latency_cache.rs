//! A persistent cache of latencies, so no architecture is measured twice on the same device
//! and runtime, and none is reused after the runtime changes.
//!
//! Entries are keyed by (device, runtime, runtime version, batch, precision, architecture) and
//! stored one JSON object per line, appended and flushed as they are measured. A line cut
//! short by a crash is skipped when the file is read again: only the measurements in flight
//! are lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::arch::Architecture;
use crate::cost::{CostModel, CostQuery, DeviceInfo, Latency, Precision};
use crate::error::{Result, SdkError};
use crate::space::SearchSpace;

/// What identifies a latency.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey {
    /// Device name.
    pub device: String,
    /// Runtime.
    pub runtime: String,
    /// Runtime version: a new version invalidates every entry of the old one.
    pub runtime_version: String,
    /// Batch size.
    pub batch: i64,
    /// Precision.
    pub precision: Precision,
    /// The architecture in text form.
    pub arch: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    key: CacheKey,
    latency: Latency,
}

/// The cache file and its contents in memory.
pub struct LatencyCache {
    path: PathBuf,
    entries: Mutex<HashMap<CacheKey, Latency>>,
    /// Lines that could not be read (a crash's partial last line, or damage).
    pub skipped_lines: usize,
}

impl LatencyCache {
    /// Reads the cache at `path` (empty if the file does not exist yet).
    pub fn open(path: &Path) -> Result<Self> {
        let (lines, skipped_lines) = crate::artifact::read_json_lines::<Line>(path)?;
        let entries = lines.into_iter().map(|l| (l.key, l.latency)).collect();
        Ok(Self { path: path.to_owned(), entries: Mutex::new(entries), skipped_lines })
    }

    /// Number of cached latencies.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(info: &DeviceInfo, query: &CostQuery, arch: String) -> CacheKey {
        CacheKey {
            device: info.device.clone(),
            runtime: info.runtime.clone(),
            runtime_version: info.runtime_version.clone(),
            batch: query.batch,
            precision: query.precision,
            arch,
        }
    }

    /// Latencies of `archs` on `model`: cached ones are reused, the others are priced in one
    /// call to the model and appended to the file.
    pub fn latency(
        &self,
        model: &dyn CostModel,
        space: &dyn SearchSpace,
        archs: &[Architecture],
        query: &CostQuery,
    ) -> Result<Vec<Latency>> {
        let info = model.info();
        let keys: Vec<CacheKey> = archs.iter().map(|a| Self::key(&info, query, space.format_arch(a))).collect();
        let missing: Vec<usize> = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            (0..archs.len()).filter(|&i| !entries.contains_key(&keys[i])).collect()
        };
        if !missing.is_empty() {
            let todo: Vec<Architecture> = missing.iter().map(|&i| archs[i].clone()).collect();
            let fresh = model.latency(space, &todo, query)?;
            let mut text = String::new();
            for (&i, l) in missing.iter().zip(&fresh) {
                let line = serde_json::to_string(&Line { key: keys[i].clone(), latency: *l })
                    .map_err(|e| SdkError::Json { path: self.path.display().to_string(), source: e })?;
                text.push_str(&line);
                text.push('\n');
            }
            self.append(&text)?;
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            for (&i, l) in missing.iter().zip(fresh) {
                entries.insert(keys[i].clone(), l);
            }
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Ok(keys.iter().map(|k| entries[k]).collect())
    }

    fn append(&self, text: &str) -> Result<()> {
        crate::artifact::append_lines(&self.path, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Genome;
    use crate::cost::LatencyMethod;
    use crate::space::{BlockSpec, Dimension, SpaceConfig};
    use crate::FeatureShape;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A device that counts what it is asked to price.
    struct Counting {
        version: String,
        priced: AtomicUsize,
    }

    impl CostModel for Counting {
        fn info(&self) -> DeviceInfo {
            DeviceInfo {
                device: "test".into(),
                runtime: "rt".into(),
                runtime_version: self.version.clone(),
                method: LatencyMethod::Measured,
                precision: Precision::Fp32,
            }
        }
        fn latency(&self, _: &dyn SearchSpace, archs: &[Architecture], _: &CostQuery) -> Result<Vec<Latency>> {
            self.priced.fetch_add(archs.len(), Ordering::SeqCst);
            Ok(archs.iter().map(|a| Latency { ms: a.blocks[0].int("k").unwrap() as f64, cv: None }).collect())
        }
    }

    /// A one-block space; nothing is built from it here, so it needs no layer types.
    struct Toy {
        config: SpaceConfig,
        blocks: Vec<BlockSpec>,
    }

    impl SearchSpace for Toy {
        fn name(&self) -> &str {
            "toy"
        }
        fn config(&self) -> &SpaceConfig {
            &self.config
        }
        fn blocks(&self) -> &[BlockSpec] {
            &self.blocks
        }
        fn teacher(&self) -> Architecture {
            self.decode(&Genome(vec![0]))
        }
        fn stem_layers(&self) -> Vec<crate::LayerSpec> {
            vec![]
        }
        fn block_layers(&self, _: usize, _: &crate::BlockOption) -> Result<Vec<crate::LayerSpec>> {
            Ok(vec![])
        }
        fn head_layers(&self) -> Vec<crate::LayerSpec> {
            vec![]
        }
    }

    fn space() -> Toy {
        let dims = vec![Dimension::new("k", "kernel", [1i64, 2, 3])];
        let options = crate::space::enumerate_options(&dims, Some);
        let block = BlockSpec {
            input: FeatureShape::new(3, 8, 8),
            output: FeatureShape::new(3, 8, 8),
            stride: 1,
            dims,
            options,
            rules: vec![],
        };
        Toy {
            config: SpaceConfig { resolution: 8, width_mult: 1.0, num_classes: 2, in_channels: 3 },
            blocks: vec![block],
        }
    }

    #[test]
    fn nothing_is_priced_twice_and_a_new_runtime_version_misses() {
        let dir = std::env::temp_dir().join(format!("donna-latency-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("latency.jsonl");
        let s = space();
        let archs: Vec<Architecture> = (0..3).map(|i| s.decode(&Genome(vec![i]))).collect();
        let q = CostQuery::default();
        let dev = Counting { version: "1".into(), priced: AtomicUsize::new(0) };
        let cache = LatencyCache::open(&path).unwrap();
        let first = cache.latency(&dev, &s, &archs[..2], &q).unwrap();
        let second = cache.latency(&dev, &s, &archs, &q).unwrap();
        assert_eq!(dev.priced.load(Ordering::SeqCst), 3, "only the third architecture is new");
        assert_eq!(first[..], second[..2]);

        // Reopened: everything is there; a line cut short by a crash is skipped.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(br#"{"key":{"dev"#).unwrap();
        let reopened = LatencyCache::open(&path).unwrap();
        assert_eq!((reopened.len(), reopened.skipped_lines), (3, 1));
        reopened.latency(&dev, &s, &archs, &q).unwrap();
        assert_eq!(dev.priced.load(Ordering::SeqCst), 3);

        let upgraded = Counting { version: "2".into(), priced: AtomicUsize::new(0) };
        reopened.latency(&upgraded, &s, &archs, &q).unwrap();
        assert_eq!(upgraded.priced.load(Ordering::SeqCst), 3, "a new runtime version reuses nothing");
        let batch8 = CostQuery { batch: 8, ..q };
        reopened.latency(&upgraded, &s, &archs[..1], &batch8).unwrap();
        assert_eq!(upgraded.priced.load(Ordering::SeqCst), 4, "batch size is part of the key");
        let after = LatencyCache::open(&path).unwrap();
        assert_eq!((after.len(), after.skipped_lines), (7, 1), "appends after a partial line stay readable");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
