//! Gives this crate's tests an rpath to libtorch, and records the libtorch version the crate is
//! built against (`DONNA_LIBTORCH_VERSION`): it tags every tensor type that crosses the plugin
//! boundary, so a plugin built on another libtorch fails the load-time layout check.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let mut version = String::from("unknown");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        // PyPI's torch has torch/version.py next to torch/lib; a libtorch zip has build-version.
        let root = std::path::Path::new(&dir).join("..");
        let from_py = std::fs::read_to_string(root.join("version.py")).ok().and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("__version__ = ").map(|v| v.trim_matches(['\'', '"']).to_owned()))
        });
        let from_file = || std::fs::read_to_string(root.join("build-version")).ok().map(|v| v.trim().to_owned());
        if let Some(v) = from_py.or_else(from_file) {
            // The base version: a CPU and a CUDA build of one release share the C++ ABI.
            version = v.split('+').next().unwrap_or(&v).to_owned();
        }
        println!("cargo:rerun-if-changed={}", root.join("version.py").display());
    }
    println!("cargo:rustc-env=DONNA_LIBTORCH_VERSION={version}");
}
