//! Writing artifacts so that a crash never leaves a half-written file that looks complete.
//!
//! Every artifact is written to a temporary file in the same directory, flushed to disk and
//! renamed over the final name: readers see the old file or the new one, never a mix.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, SdkError};

fn io(path: &Path, source: std::io::Error) -> SdkError {
    SdkError::Io { path: path.display().to_string(), source }
}

/// Writes `bytes` to `path` atomically, creating parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(())
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| SdkError::Json { path: path.display().to_string(), source: e })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads JSON from `path`, with the path in every error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
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
}
