//! Named tensors on disk (safetensors), written atomically and read back with checks.
//!
//! Every checkpoint donna writes (teacher, distilled blocks, finetuned models, optimizer
//! state) goes through here, so a crash never leaves a truncated file under the final name,
//! and a corrupt or mismatched file is reported with its path instead of being half-loaded.

use std::collections::HashMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::Tensor;

use crate::error::{Result, SdkError};

/// Writes `tensors` to `path` (safetensors) atomically.
pub fn save(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| SdkError::Io { path: dir.display().to_string(), source: e })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}.safetensors", std::process::id()));
    // safetensors stores dense row-major data: channels-last weights are made contiguous here.
    let named: Vec<(&str, Tensor)> =
        tensors.iter().map(|(n, t)| (n.as_str(), t.to_device(tch::Device::Cpu).contiguous())).collect();
    let written = Tensor::write_safetensors(&named, &tmp).map_err(SdkError::from).and_then(|()| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| SdkError::Io { path: tmp.display().to_string(), source: e })
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    crate::artifact::commit(&tmp, path)
}

/// Reads all tensors of a safetensors file, naming the file in any error; a file its run's
/// manifest lists with other contents is refused as damaged.
pub fn load(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.is_file() {
        return Err(SdkError::Config(format!("{}: no such checkpoint", path.display())));
    }
    crate::artifact::verify(path)?;
    Tensor::read_safetensors(path).map_err(|e| {
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("unreadable");
        SdkError::Config(format!("{}: not a valid safetensors checkpoint ({first})", path.display()))
    })
}

/// The variables of `vs` as named tensors, sorted by name.
pub fn variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Copies `tensors` into the variables of `vs` with the same names. With `strict`, every
/// variable of `vs` must be given; in any case every given tensor must exist in `vs` with the
/// same shape. Errors list the offending names (`source` names the file for messages).
pub fn copy_into(vs: &VarStore, tensors: &[(String, Tensor)], strict: bool, source: &str) -> Result<usize> {
    let vars = vs.variables();
    let given: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut problems = Vec::new();
    for (name, t) in &given {
        match vars.get(*name) {
            None => problems.push(format!("unexpected `{name}`")),
            Some(v) if v.size() != t.size() => {
                problems.push(format!("`{name}` has shape {:?}, the network needs {:?}", t.size(), v.size()))
            }
            _ => {}
        }
    }
    if strict {
        let mut missing: Vec<&String> = vars.keys().filter(|n| !given.contains_key(n.as_str())).collect();
        missing.sort();
        problems.extend(missing.into_iter().map(|n| format!("missing `{n}`")));
    }
    if !problems.is_empty() {
        let shown: Vec<String> = problems.iter().take(5).cloned().collect();
        let more = if problems.len() > 5 { format!(" and {} more", problems.len() - 5) } else { String::new() };
        return Err(SdkError::Config(format!("{source}: does not fit the network: {}{more}", shown.join("; "))));
    }
    tch::no_grad(|| {
        for (name, t) in &given {
            let mut v = vars[*name].shallow_clone();
            v.copy_(&t.to_device(v.device()).to_kind(v.kind()));
        }
    });
    Ok(given.len())
}
