//! `--plugin PATH.so` and `donna plugins`: dynamic plugins, loaded before any command runs.

use std::path::PathBuf;

use donna_plugin_abi::host;

use crate::table::render;

/// Loads every `--plugin` in order; the first refusal stops donna with its one-line reason.
pub fn load(paths: &[PathBuf]) -> anyhow::Result<()> {
    for p in paths {
        host::load(p)?;
    }
    Ok(())
}

pub fn list() -> anyhow::Result<()> {
    let plugins = host::loaded();
    if plugins.is_empty() {
        println!("no plugins loaded (load one with `donna --plugin PATH.so plugins`)");
        return Ok(());
    }
    let names = |kind: &str, v: &[String]| v.iter().map(|n| format!("{kind} {n}")).collect::<Vec<_>>();
    let rows: Vec<Vec<String>> = plugins
        .iter()
        .map(|p| {
            let mut contributes = names("layer", &p.layer_types);
            contributes.extend(names("space", &p.spaces));
            contributes.extend(names("device", &p.devices));
            vec![
                p.name.clone(),
                p.version.clone(),
                format!("{} / libtorch {}", p.interface, p.libtorch),
                contributes.join(", "),
                format!("{:.1} ms", p.load_ms),
                p.path.display().to_string(),
            ]
        })
        .collect();
    print!("{}", render(&["plugin", "version", "interface", "contributes", "load", "path"], &rows));
    Ok(())
}
