//! `donna verify --run DIR`: checks every artifact of a run against its manifest.
//!
//! Each file the manifest lists is `ok` (its size and SHA-256 are a listed version), `damaged`
//! (other contents: truncated, overwritten or bit-rotted) or `missing`. Files under the run
//! that the manifest does not list (logs, plots written elsewhere, files from an older donna)
//! are counted as `unlisted`. Exits non-zero when anything is damaged; the stages redo damaged
//! artifacts on their next run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use donna_sdk::artifact::{self, Integrity};

#[derive(Args)]
pub struct VerifyArgs {
    /// The run directory.
    #[arg(long, value_name = "DIR")]
    run: PathBuf,
}

pub fn run(a: &VerifyArgs) -> anyhow::Result<()> {
    if !a.run.join("run.json").is_file() {
        anyhow::bail!("{}: not a run directory (no run.json)", a.run.display());
    }
    let entries = artifact::manifest(&a.run)?;
    // The latest entry of each path; files donna removed on purpose are no longer expected.
    let mut latest: BTreeMap<&str, &artifact::ManifestEntry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
    latest.retain(|_, e| !e.removed);
    let (mut ok, mut damaged, mut missing) = (0usize, Vec::new(), 0usize);
    for path in latest.keys() {
        match artifact::integrity(&a.run.join(path))? {
            Integrity::Valid | Integrity::Unlisted => ok += 1,
            Integrity::Missing => missing += 1,
            Integrity::Damaged(why) => {
                println!("damaged  {path}: {why}");
                damaged.push(path.to_string());
            }
        }
    }
    let unlisted = count_unlisted(&a.run, &latest)?;
    println!(
        "{}: {} artifacts listed: {ok} ok, {} damaged, {missing} missing; {unlisted} other files",
        a.run.display(),
        latest.len(),
        damaged.len()
    );
    if !damaged.is_empty() {
        anyhow::bail!(
            "{} damaged artifacts in {}; re-run the stages (`donna run --run {}`) to redo them",
            damaged.len(),
            a.run.display(),
            a.run.display()
        );
    }
    Ok(())
}

fn count_unlisted(root: &std::path::Path, listed: &BTreeMap<&str, &artifact::ManifestEntry>) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)?
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if !listed.contains_key(rel.as_str()) && rel != artifact::MANIFEST {
                n += 1;
            }
        }
    }
    Ok(n)
}
