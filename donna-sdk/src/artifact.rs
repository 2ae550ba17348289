//! Writing artifacts so that a crash never leaves a half-written file that looks complete.
//!
//! Every artifact is written to a temporary file in the same directory, flushed to disk and
//! renamed over the final name: readers see the old file or the new one, never a mix.
//!
//! Inside a run directory (a folder with `run.json`), every artifact written here is also
//! listed in `DIR/manifest.jsonl` with its size and SHA-256, before it is renamed into place.
//! Reads check the file against the manifest, so damage that happens after writing (a bad
//! disk, a truncating copy, an editor) is caught instead of being read as valid: [`read_json`]
//! and [`crate::checkpoint::load`] refuse a damaged file, and the "is this done?" checks of the
//! stages use [`usable`], which moves a damaged file aside (`NAME.damaged`) so the stage is
//! redone. Append-only logs (`*.jsonl`) are not listed: each of their lines is checked when
//! read, and a bad line is dropped and redone (see [`read_json_lines`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SdkError};

fn io(path: &Path, source: std::io::Error) -> SdkError {
    SdkError::Io { path: path.display().to_string(), source }
}

/// The manifest's file name, in the run directory.
pub const MANIFEST: &str = "manifest.jsonl";

/// One version of one artifact, as listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the run directory, with `/` separators.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: String,
    /// Set when donna removed the file on purpose (a training checkpoint once training is
    /// done): it is then no longer expected.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// What a check of one file against the manifest found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// No such file.
    Missing,
    /// The file is one of the versions the manifest lists.
    Valid,
    /// The file is not in a run directory, or the manifest does not list it (written by
    /// something else, or by a donna before manifests).
    Unlisted,
    /// The manifest lists the file, but not with these contents.
    Damaged(String),
}

/// The run directory holding `path`: the nearest folder above it with a `run.json` (for
/// `run.json` itself, its folder).
pub fn run_root(path: &Path) -> Option<PathBuf> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if path.file_name().is_some_and(|n| n == "run.json") {
        return Some(dir.to_owned());
    }
    dir.ancestors().find(|d| d.join("run.json").is_file()).map(Path::to_owned)
}

fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    Some(parts.join("/"))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Size and SHA-256 (hex) of the file at `path`, read in chunks.
pub fn checksum(path: &Path) -> Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = fs::File::open(path).map_err(|e| io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
}

/// Every entry of the manifest of the run at `root` (lines that do not parse are skipped).
pub fn manifest(root: &Path) -> Result<Vec<ManifestEntry>> {
    Ok(read_json_lines(&root.join(MANIFEST))?.0)
}

/// The manifest's entries by path, cached per manifest file while its size is unchanged (it
/// only grows), so checking many artifacts in a row parses it once.
fn listed_versions(root: &Path, rel: &str) -> Result<Vec<ManifestEntry>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    type ByPath = Arc<HashMap<String, Vec<ManifestEntry>>>;
    static CACHE: Mutex<Option<(PathBuf, u64, ByPath)>> = Mutex::new(None);
    let file = root.join(MANIFEST);
    let len = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let by_path = match &*cache {
        Some((f, l, map)) if *f == file && *l == len => Arc::clone(map),
        _ => {
            let mut map: HashMap<String, Vec<ManifestEntry>> = HashMap::new();
            for e in manifest(root)? {
                map.entry(e.path.clone()).or_default().push(e);
            }
            let map = Arc::new(map);
            *cache = Some((file, len, Arc::clone(&map)));
            map
        }
    };
    Ok(by_path.get(rel).cloned().unwrap_or_default())
}

/// Checks the file at `path` against its run's manifest.
pub fn integrity(path: &Path) -> Result<Integrity> {
    if !path.exists() {
        return Ok(Integrity::Missing);
    }
    let Some(root) = run_root(path) else { return Ok(Integrity::Unlisted) };
    let Some(rel) = relative(&root, path) else { return Ok(Integrity::Unlisted) };
    let listed: Vec<ManifestEntry> = listed_versions(&root, &rel)?.into_iter().filter(|e| !e.removed).collect();
    let Some(last) = listed.last() else { return Ok(Integrity::Unlisted) };
    let (bytes, sha256) = checksum(path)?;
    // Every version donna wrote is listed, the latest last. An older one is as complete as it
    // was when written (a crash can fall between listing a new version and renaming it into
    // place); whether it is the version a stage wants is that stage's check (settings, epochs).
    if listed.iter().any(|e| e.bytes == bytes && e.sha256 == sha256) {
        return Ok(Integrity::Valid);
    }
    let why = if bytes != last.bytes {
        format!("{bytes} bytes, the manifest lists {} (truncated or overwritten?)", last.bytes)
    } else {
        format!("SHA-256 {}…, the manifest lists {}…", &sha256[..12], &last.sha256[..12])
    };
    Ok(Integrity::Damaged(why))
}

/// Fails with a clear error if `path` is listed in its run's manifest with other contents.
pub fn verify(path: &Path) -> Result<()> {
    match integrity(path)? {
        Integrity::Damaged(why) => Err(damaged(path, &why)),
        _ => Ok(()),
    }
}

fn damaged(path: &Path, why: &str) -> SdkError {
    SdkError::Config(format!(
        "{}: damaged artifact ({why}); re-run the stage that makes it (a damaged file is moved aside and redone)",
        path.display()
    ))
}

/// Whether `path` exists and is intact, for a stage deciding what is done. A damaged file is
/// reported on stderr and moved aside to `NAME.damaged` (kept for inspection), so the stage
/// redoes it.
pub fn usable(path: &Path) -> Result<bool> {
    match integrity(path)? {
        Integrity::Missing => Ok(false),
        Integrity::Valid | Integrity::Unlisted => Ok(true),
        Integrity::Damaged(why) => {
            let aside = path.with_file_name(format!(
                "{}.damaged",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            fs::rename(path, &aside).map_err(|e| io(path, e))?;
            eprintln!(
                "warning: {}: damaged artifact ({why}); moved to {} and redoing it",
                path.display(),
                aside.display()
            );
            Ok(false)
        }
    }
}

/// Puts the finished temporary file `tmp` in place at `path`: lists it in the run's manifest
/// (if `path` is in a run directory), then renames it. On error `tmp` is removed.
pub fn commit(tmp: &Path, path: &Path) -> Result<()> {
    let result = (|| {
        if let Some(root) = run_root(path) {
            if let Some(rel) = relative(&root, path) {
                let (bytes, sha256) = checksum(tmp)?;
                append_json_line(&root.join(MANIFEST), &ManifestEntry { path: rel, bytes, sha256, removed: false })?;
            }
        }
        fs::rename(tmp, path).map_err(|e| io(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Removes an artifact donna no longer needs (a missing file is fine) and records the removal
/// in the run's manifest, so `donna verify` does not report it missing.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path, e)),
    }
    if let Some(root) = run_root(path) {
        if let Some(rel) = relative(&root, path) {
            let entry = ManifestEntry { path: rel, bytes: 0, sha256: String::new(), removed: true };
            append_json_line(&root.join(MANIFEST), &entry)?;
        }
    }
    Ok(())
}

/// A temporary name next to `path`, unique to this process.
pub fn temporary(path: &Path) -> Result<PathBuf> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(dir.join(format!(".{name}.tmp-{}", std::process::id())))
}

/// Writes `bytes` to `path` atomically, creating parent directories, and lists it in the run's
/// manifest.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary(path)?;
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    commit(&tmp, path)
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| SdkError::Json { path: path.display().to_string(), source: e })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads JSON from `path`, with the path in every error; a file its run's manifest lists with
/// other contents is refused as damaged.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    verify(path)?;
    let bytes = fs::read(path).map_err(|e| io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| SdkError::Json { path: path.display().to_string(), source: e })
}

/// Appends `text` (whole lines) to the JSON-lines file `path`, creating it, and syncs it. After
/// a crash the file may end in a partial line: the new lines then start on a fresh one, so
/// only the damaged line is lost.
pub fn append_lines(path: &Path, text: &str) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let err = |e| io(path, e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let mut f = fs::OpenOptions::new().create(true).read(true).append(true).open(path).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    let mut last = [b'\n'];
    if len > 0 {
        f.seek(SeekFrom::Start(len - 1)).map_err(err)?;
        f.read_exact(&mut last).map_err(err)?;
    }
    let mut bytes = Vec::with_capacity(text.len() + 1);
    if last[0] != b'\n' {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(text.as_bytes());
    // One write, so lines appended by concurrent processes (shards) do not interleave.
    f.write_all(&bytes).map_err(err)?;
    f.sync_data().map_err(err)
}

/// Appends `value` as one JSON line to `path` (see [`append_lines`]).
pub fn append_json_line<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut line =
        serde_json::to_string(value).map_err(|e| SdkError::Json { path: path.display().to_string(), source: e })?;
    line.push('\n');
    append_lines(path, &line)
}

/// Reads a JSON-lines file: the values that parse, and the number of lines that did not (a
/// crash's partial line, or damage). A missing file is empty.
pub fn read_json_lines<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, usize)> {
    if !path.exists() {
        return Ok((Vec::new(), 0));
    }
    let text = fs::read_to_string(path).map_err(|e| io(path, e))?;
    let (mut values, mut skipped) = (Vec::new(), 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(v) => values.push(v),
            Err(_) => skipped += 1,
        }
    }
    Ok((values, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_json_round_trip_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("donna-artifact-{}", std::process::id()));
        let path = dir.join("sub/x.json");
        write_json(&path, &vec![1, 2, 3]).unwrap();
        let back: Vec<i32> = read_json(&path).unwrap();
        assert_eq!(back, vec![1, 2, 3]);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.json")]);
        let err = read_json::<Vec<i32>>(&dir.join("missing.json")).unwrap_err().to_string();
        assert!(err.contains("missing.json"), "{err}");
        fs::write(&path, b"[1, 2").unwrap();
        let err = read_json::<Vec<i32>>(&path).unwrap_err().to_string();
        assert!(err.contains("x.json") && err.contains("EOF"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_lines_survive_a_partial_last_line() {
        let dir = std::env::temp_dir().join(format!("donna-jsonl-{}", std::process::id()));
        let path = dir.join("x.jsonl");
        append_json_line(&path, &1).unwrap();
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"[2, ").unwrap();
        append_json_line(&path, &3).unwrap();
        let (values, skipped): (Vec<i32>, usize) = read_json_lines(&path).unwrap();
        assert_eq!((values, skipped), (vec![1, 3], 1));
        assert_eq!(read_json_lines::<i32>(&dir.join("none.jsonl")).unwrap().0, Vec::<i32>::new());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_manifest_tells_intact_older_damaged_and_unlisted_files_apart() {
        let dir = std::env::temp_dir().join(format!("donna-manifest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        write_json(&dir.join("run.json"), &"config").unwrap();
        let path = dir.join("sub/table.json");
        write_json(&path, &vec![1, 2, 3]).unwrap();
        assert_eq!(integrity(&path).unwrap(), Integrity::Valid);
        let first = fs::read(&path).unwrap();
        write_json(&path, &vec![4, 5]).unwrap();
        assert_eq!(integrity(&path).unwrap(), Integrity::Valid);
        let entries = manifest(&dir).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["run.json", "sub/table.json", "sub/table.json"]);
        assert_eq!(entries[2].bytes, fs::metadata(&path).unwrap().len());
        // The previous version is complete too (a crash between listing and renaming).
        fs::write(&path, &first).unwrap();
        assert_eq!(integrity(&path).unwrap(), Integrity::Valid);

        // Same length, one byte changed: still parses, but is not what was written.
        fs::write(&path, b"[\n  4,\n  6\n]\n").unwrap();
        assert!(matches!(integrity(&path).unwrap(), Integrity::Damaged(w) if w.contains("SHA-256")));
        let err = read_json::<Vec<i32>>(&path).unwrap_err().to_string();
        assert!(err.contains("table.json: damaged artifact"), "{err}");
        fs::write(&path, b"[4").unwrap();
        assert!(matches!(integrity(&path).unwrap(), Integrity::Damaged(w) if w.contains("2 bytes")));
        assert!(!usable(&path).unwrap(), "a damaged file is not usable");
        assert!(!path.exists() && dir.join("sub/table.json.damaged").is_file(), "moved aside, not deleted");
        assert_eq!(integrity(&path).unwrap(), Integrity::Missing);

        fs::write(dir.join("sub/notes.txt"), b"mine").unwrap();
        assert_eq!(integrity(&dir.join("sub/notes.txt")).unwrap(), Integrity::Unlisted);
        assert!(usable(&dir.join("sub/notes.txt")).unwrap());
        let outside = std::env::temp_dir().join(format!("donna-no-run-{}.json", std::process::id()));
        write_json(&outside, &1).unwrap();
        assert_eq!(integrity(&outside).unwrap(), Integrity::Unlisted);
        fs::remove_file(&outside).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_removal_is_recorded_and_a_later_version_is_checked_again() {
        let dir = std::env::temp_dir().join(format!("donna-manifest-rm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        write_json(&dir.join("run.json"), &"config").unwrap();
        let path = dir.join("x.ckpt.json");
        write_json(&path, &1).unwrap();
        remove(&path).unwrap();
        remove(&path).unwrap(); // already gone: fine, nothing more recorded
        let entries = manifest(&dir).unwrap();
        assert_eq!(entries.iter().filter(|e| e.removed).count(), 1);
        assert_eq!(integrity(&path).unwrap(), Integrity::Missing);
        write_json(&path, &2).unwrap();
        assert_eq!(integrity(&path).unwrap(), Integrity::Valid);
        fs::write(&path, b"3\n").unwrap();
        assert!(matches!(integrity(&path).unwrap(), Integrity::Damaged(_)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checksums_are_sha256() {
        let path = std::env::temp_dir().join(format!("donna-sha-{}", std::process::id()));
        fs::write(&path, b"abc").unwrap();
        let (bytes, sha) = checksum(&path).unwrap();
        assert_eq!(bytes, 3);
        assert_eq!(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        fs::remove_file(&path).unwrap();
    }
}
