//! Search spaces declared in a TOML file (`--space file:PATH`): a platform team tries a space
//! without writing Rust.
//!
//! ```toml
//! name = "tinynet"            # architectures are written `tinynet:...`
//! activation = "relu"         # `act` of every layer that does not set its own
//!
//! [[stem]]                    # fixed layers: `type` is a registered layer type, the other
//! type = "conv_bn_act"        # keys are its settings; `out` is scaled by --width-mult
//! out = 16
//! k = 3
//! stride = 2
//!
//! [[block]]                   # a searchable block
//! out = 24                    # output channels (scaled by --width-mult)
//! stride = 2                  # stride of its first layer
//! teacher = "tmbconv-k3-e6-d2"  # the teacher's option, in the option text form
//! [block.choices]             # one axis per key: every combination is an option
//! t = ["mbconv", "fused_mbconv"]  # the layer type (registered names; default: mbconv)
//! k = [3, 5]                  # any other key is a setting of the layer
//! e = [3, 6]
//! d = [1, 2]                  # depth: d layers, the first with the stride (default 1)
//!
//! [[head]]
//! type = "classifier"         # `classes` comes from the dataset
//! ```
//!
//! Every error names the file, the line and the field. A file is refused when a block has more
//! than [`MAX_OPTIONS`] options, when a choice cannot be written in an architecture string (no
//! `-`, `/` or spaces; finite numbers; `KEYVALUE` must not read as another key), or when an
//! option does not fit the block: every option must map the block's input shape to the
//! teacher's output shape, as blocks are distilled alone and stitched together.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::arch::BlockOption;
use crate::error::{Result, SdkError};
use crate::layer::{FeatureShape, LayerSpec};
use crate::layout::LayoutSpace;
use crate::network::count_layers;
use crate::registry;
use crate::space::{enumerate_options, BlockSpec, Dimension, SearchSpace, SpaceConfig};
use crate::value::{Settings, Value};

/// The most options a block of a space file may have: each is distilled, and the file is
/// expanded to every combination of its choices before anything else is checked.
pub const MAX_OPTIONS: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceFile {
    name: Spanned<String>,
    activation: Option<Spanned<String>>,
    #[serde(default)]
    stem: Vec<Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    block: Vec<Spanned<BlockDecl>>,
    #[serde(default)]
    head: Vec<Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockDecl {
    out: Spanned<i64>,
    #[serde(default = "one")]
    stride: Spanned<i64>,
    teacher: Spanned<String>,
    choices: BTreeMap<String, Spanned<Vec<toml::Value>>>,
}

fn one() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}

/// Where in the text an error is.
struct Source<'a> {
    path: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())].matches('\n').count() + 1
    }

    fn err(&self, span: &Range<usize>, field: &str, msg: impl std::fmt::Display) -> SdkError {
        SdkError::Config(format!("{}:{}: {field}: {msg}", self.path, self.line(span)))
    }
}

fn to_value(v: &toml::Value) -> Option<Value> {
    match v {
        toml::Value::Integer(i) => Some(Value::Int(*i)),
        toml::Value::Float(x) => Some(Value::Float(*x)),
        toml::Value::Boolean(b) => Some(Value::Bool(*b)),
        toml::Value::String(s) => Some(Value::Name(s.clone())),
        _ => None,
    }
}

fn layer_list(
    src: &Source,
    part: &str,
    decls: &[Spanned<BTreeMap<String, Spanned<toml::Value>>>],
    config: &SpaceConfig,
    activation: Option<&str>,
) -> Result<Vec<LayerSpec>> {
    let mut out = Vec::new();
    for (i, decl) in decls.iter().enumerate() {
        let field = |k: &str| format!("{part}[{i}].{k}");
        let ty = match decl.get_ref().get("type").map(|v| (v, v.get_ref())) {
            Some((_, toml::Value::String(s))) => s.clone(),
            Some((v, _)) => return Err(src.err(&v.span(), &field("type"), "must be a layer type name")),
            None => return Err(src.err(&decl.span(), &format!("{part}[{i}]"), "has no `type`")),
        };
        check_layer_type(src, &decl.span(), &field("type"), &ty)?;
        let mut settings = Settings::new();
        for (k, v) in decl.get_ref().iter().filter(|(k, _)| k.as_str() != "type") {
            let value = to_value(v.get_ref())
                .ok_or_else(|| src.err(&v.span(), &field(k), "must be a number, a boolean or a string"))?;
            let value = match (k.as_str(), value) {
                ("out", Value::Int(c)) => Value::Int(config.channels(c, 8)),
                (_, v) => v,
            };
            settings.set(k, value);
        }
        if ty == "classifier" && !settings.contains("classes") {
            settings.set("classes", config.num_classes);
        }
        if let (Some(a), false) = (activation, settings.contains("act")) {
            if ty != "classifier" {
                settings.set("act", a);
            }
        }
        out.push(LayerSpec::new(&ty, settings));
    }
    Ok(out)
}

fn check_layer_type(src: &Source, span: &Range<usize>, field: &str, ty: &str) -> Result<()> {
    registry::layer_type(ty).map(|_| ()).map_err(|e| src.err(span, field, e))
}

/// Reads the space declared in the TOML file at `path`, for `config`.
pub fn load(path: &Path, config: &SpaceConfig) -> Result<LayoutSpace> {
    let text =
        std::fs::read_to_string(path).map_err(|e| SdkError::Io { path: path.display().to_string(), source: e })?;
    parse(&path.display().to_string(), &text, config)
}

/// Parses a space file's `text` (`path` names it in errors).
pub fn parse(path: &str, text: &str, config: &SpaceConfig) -> Result<LayoutSpace> {
    let src = Source { path, text };
    let file: SpaceFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(String::new(), |s| format!("{}:", src.line(&s)));
        SdkError::Config(format!("{path}:{line} {}", e.message()))
    })?;
    let name = file.name.get_ref().clone();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(src.err(&file.name.span(), "name", "must be letters, digits, - and _"));
    }
    if file.block.is_empty() {
        return Err(SdkError::Config(format!("{path}: a space needs at least one [[block]]")));
    }
    let act = file.activation.as_ref().map(|a| a.get_ref().as_str());
    let stem = layer_list(&src, "stem", &file.stem, config, act)?;
    let head = layer_list(&src, "head", &file.head, config, act)?;
    let mut blocks = Vec::new();
    let mut teacher = Vec::new();
    for (b, decl) in file.block.iter().enumerate() {
        let d = decl.get_ref();
        let field = |k: &str| format!("block[{b}].{k}");
        if *d.out.get_ref() < 1 {
            return Err(src.err(&d.out.span(), &field("out"), "must be at least 1"));
        }
        if !(1..=4).contains(d.stride.get_ref()) {
            return Err(src.err(&d.stride.span(), &field("stride"), "must be 1, 2, 3 or 4"));
        }
        if d.choices.is_empty() {
            return Err(src.err(&decl.span(), &format!("block[{b}]"), "has no [block.choices]"));
        }
        let combinations =
            d.choices.values().try_fold(1usize, |n, v| n.checked_mul(v.get_ref().len()).filter(|&n| n <= MAX_OPTIONS));
        if combinations.is_none() {
            return Err(src.err(
                &decl.span(),
                &format!("block[{b}].choices"),
                format!("more than {MAX_OPTIONS} combinations; a block may have at most {MAX_OPTIONS} options"),
            ));
        }
        let mut dims = Vec::new();
        for (key, values) in &d.choices {
            let f = field(&format!("choices.{key}"));
            if values.get_ref().is_empty() {
                return Err(src.err(&values.span(), &f, "needs at least one value"));
            }
            let vals = values
                .get_ref()
                .iter()
                .map(|v| {
                    to_value(v)
                        .ok_or_else(|| src.err(&values.span(), &f, "values must be numbers, booleans or strings"))
                })
                .collect::<Result<Vec<Value>>>()?;
            if key == "t" {
                for v in &vals {
                    check_layer_type(&src, &values.span(), &f, &v.token())?;
                }
            }
            if key == "d" && vals.iter().any(|v| !matches!(v, Value::Int(1..=16))) {
                return Err(src.err(&values.span(), &f, "depths must be integers from 1 to 16"));
            }
            if let Some(x) = vals.iter().find_map(|v| match v {
                Value::Float(x) if !x.is_finite() => Some(x),
                _ => None,
            }) {
                return Err(src.err(&values.span(), &f, format!("{x} is not a finite number")));
            }
            dims.push(Dimension::new(key, key, vals));
        }
        let options = enumerate_options(&dims, Some);
        let spec = BlockSpec {
            input: FeatureShape::new(0, 0, 0),
            output: FeatureShape::new(config.channels(*d.out.get_ref(), 8), 0, 0),
            stride: *d.stride.get_ref(),
            dims,
            options,
            rules: Vec::new(),
        };
        // Each choice must read back alone from its text form `KEYVALUE`.
        for (dim, (key, values)) in spec.dims.iter().zip(&d.choices) {
            for v in &dim.values {
                let text = format!("{key}{}", v.token());
                let alone = BlockOption::new().with(key, v.clone());
                if text.contains(['-', '/'])
                    || text.contains(char::is_whitespace)
                    || spec.parse_option(b, &text).ok() != Some(alone)
                {
                    return Err(src.err(
                        &values.span(),
                        &field(&format!("choices.{key}")),
                        format!(
                            "`{v}` cannot be written in an architecture string as `{text}` (keys and values are \
                             written without `-`, `/` or spaces, and `{text}` must not read as another key)"
                        ),
                    ));
                }
            }
        }
        let option =
            spec.parse_option(b, d.teacher.get_ref()).map_err(|e| src.err(&d.teacher.span(), &field("teacher"), e))?;
        spec.option_index(b, &option).map_err(|e| src.err(&d.teacher.span(), &field("teacher"), e))?;
        teacher.push(option);
        blocks.push(spec);
    }
    let default_act = act.map(str::to_owned);
    let space = LayoutSpace::new(
        &name,
        config.clone(),
        stem,
        blocks,
        head,
        teacher,
        Box::new(move |_, spec, option| block_layers(spec, option, default_act.as_deref())),
    )
    .map_err(|e| SdkError::Config(format!("{path}: {e}")))?;
    // The teacher fits (LayoutSpace::new traced it); so must every other option.
    for (b, (spec, decl)) in space.blocks().iter().zip(&file.block).enumerate() {
        for option in &spec.options {
            let fits = space.block_layers(b, option).and_then(|layers| count_layers("", &layers, spec.input)).and_then(
                |count| {
                    if count.output == spec.output {
                        Ok(())
                    } else {
                        Err(SdkError::Config(format!("its output is {}, the teacher's {}", count.output, spec.output)))
                    }
                },
            );
            if let Err(e) = fits {
                let option = spec.format_option(option);
                return Err(src.err(
                    &decl.span(),
                    &format!("block[{b}].choices"),
                    format!("option `{option}` does not fit: {e}"),
                ));
            }
        }
    }
    Ok(space)
}

/// `d` layers of type `t` with the option's other settings; the first carries the stride.
fn block_layers(spec: &BlockSpec, option: &BlockOption, act: Option<&str>) -> Result<Vec<LayerSpec>> {
    let depth = option.int_or("d", 1)?;
    let ty = option.name_or("t", "mbconv")?.to_owned();
    (0..depth)
        .map(|i| {
            let mut s = Settings::new();
            for (k, v) in option.iter().filter(|(k, _)| *k != "t" && *k != "d") {
                s.set(k, v.clone());
            }
            s.set("out", spec.output.channels);
            s.set("stride", if i == 0 { spec.stride } else { 1 });
            if let (Some(a), false) = (act, s.contains("act")) {
                s.set("act", a);
            }
            Ok(LayerSpec::new(&ty, s))
        })
        .collect()
}
