//! `--plugin PATH.so` and `donna plugins`: dynamic plugins, loaded before any command runs.

use std::path::PathBuf;

use donna_plugin_abi::host;
use donna_sdk::registry::{self, Origin};

use crate::table::render;

/// Loads every `--plugin` in order; the first refusal stops donna with its one-line reason.
pub fn load(paths: &[PathBuf]) -> anyhow::Result<()> {
    for p in paths {
        host::load(p)?;
    }
    Ok(())
}

/// Every plugin, built-in and loaded, with what it contributes.
pub fn list() -> anyhow::Result<()> {
    let plugins = registry::plugins();
    let rows: Vec<Vec<String>> = plugins
        .iter()
        .map(|p| {
            let contributes: Vec<String> = p.contributions().into_iter().map(|(k, n)| format!("{k} {n}")).collect();
            let (interface, load, from) = match &p.origin {
                Origin::BuiltIn => ("built in".to_owned(), "—".to_owned(), "built in".to_owned()),
                Origin::Library { path, interface, libtorch, load_ms } => (
                    format!("{interface} / libtorch {libtorch}"),
                    format!("{load_ms:.1} ms"),
                    path.display().to_string(),
                ),
            };
            vec![p.name.clone(), p.version.clone(), interface, contributes.join(", "), load, from]
        })
        .collect();
    print!("{}", render(&["plugin", "version", "interface", "contributes", "load", "from"], &rows));
    if host::loaded().is_empty() {
        println!("no plugins loaded (load one with `donna --plugin PATH.so plugins`)");
    }
    Ok(())
}
