//! Scratch directories for the format tests, removed when dropped.

use std::path::PathBuf;

/// A scratch directory under the system's temp dir, unique per process, module and tag.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory for `module`'s test `tag`.
    pub fn new(module: &str, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("donna-{module}-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The directory as a dataset argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
