//! What must hold when the text parsers meet arbitrary input, as functions a fuzzer can drive.
//!
//! [`arch_text`] feeds bytes to [`SearchSpace::parse_arch`] and [`space_file`] to
//! [`crate::space_file::parse`]. Each returns normally when the invariants hold and panics,
//! naming the input, when one is broken; to a fuzzer a panic is a crash. The invariants:
//!
//! - no input panics, and a refusal is a user error (exit code 2) with a non-empty message; a
//!   space file's errors start with the file's path;
//! - an accepted architecture is canonical: its text form and its JSON form read back to the
//!   same architecture (the same genome), and the network counts (the layers fit);
//! - an accepted space file is usable: every block has options, every option's text form reads
//!   back to that option alone, every option maps the block's input shape to its output shape
//!   (the contract that lets blocks be distilled alone and stitched together), and the teacher
//!   and sampled architectures pass the architecture checks above.
//!
//! `tests/fuzz` runs these under libFuzzer (`scripts/fuzz.sh`); `tests/fuzz_seeds.rs` runs them
//! over the committed seeds and deterministic [`mutate`]d copies on every `cargo test`.

use crate::arch::Architecture;
use crate::error::SdkError;
use crate::network::{count_layers, count_network};
use crate::registry;
use crate::rng::{fnv1a, SplitMix64};
use crate::space::{SearchSpace, SpaceConfig};

/// The path that [`space_file`] parses under; every error must name it.
pub const SPACE_FILE_PATH: &str = "fuzz.toml";

/// A small valid space file (two blocks, a layer-type axis): the arch target parses against it
/// besides the registered spaces, as its options include names.
pub const TINY_SPACE: &str = r#"name = "tinynet"
activation = "relu"

[[stem]]
type = "conv_bn_act"
out = 16
k = 3
stride = 1

[[block]]
out = 24
stride = 2
teacher = "d2-e4-k3-tmbconv"
[block.choices]
t = ["mbconv", "fused_mbconv"]
k = [3, 5]
e = [2, 4]
d = [1, 2]

[[block]]
out = 32
stride = 2
teacher = "d1-e4-k3"
[block.choices]
k = [3, 5]
e = [2, 4]
d = [1, 2]

[[head]]
type = "conv_bn_act"
out = 64
k = 1

[[head]]
type = "classifier"
"#;

/// The configuration space files are built for: small, so counting every option is quick.
pub fn space_file_config() -> SpaceConfig {
    SpaceConfig { resolution: 32, width_mult: 1.0, num_classes: 10, in_channels: 3 }
}

/// The spaces [`arch_text`] is run against: every registered space at the default
/// configuration, then [`TINY_SPACE`].
pub fn arch_spaces() -> Vec<Box<dyn SearchSpace>> {
    let config = SpaceConfig::default();
    let mut spaces: Vec<Box<dyn SearchSpace>> = registry::spaces()
        .into_iter()
        .map(|p| p.build(&config).unwrap_or_else(|e| panic!("space `{}` does not build: {e}", p.name())))
        .collect();
    let tiny = crate::space_file::parse("tiny.toml", TINY_SPACE, &space_file_config())
        .unwrap_or_else(|e| panic!("the tiny space does not parse: {e}"));
    spaces.push(Box::new(tiny));
    spaces
}

/// Parses `data` as an architecture of `space` and checks the result (see the module doc).
/// Input that is not UTF-8 is skipped: the command line and JSON only hand over strings.
pub fn arch_text(space: &dyn SearchSpace, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match space.parse_arch(text) {
        Ok(arch) => check_arch(space, &arch, text),
        Err(e) => check_refusal(&e, text),
    }
}

/// Parses `data` as a space file and checks the space (see the module doc). Input that is not
/// UTF-8 is skipped: files are read as strings, so such a file is refused before parsing.
pub fn space_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match crate::space_file::parse(SPACE_FILE_PATH, text, &space_file_config()) {
        Ok(space) => check_space(&space, text),
        Err(e) => {
            check_refusal(&e, text);
            let msg = e.to_string();
            assert!(msg.starts_with(SPACE_FILE_PATH), "space file error `{msg}` does not name the file, for {text:?}");
        }
    }
}

fn check_refusal(err: &SdkError, input: &str) {
    let msg = err.to_string();
    assert!(!msg.trim().is_empty(), "empty error message for {input:?}");
    assert!(err.is_user_error(), "bad input gave a system error `{msg}` for {input:?}");
}

/// Checks an architecture that `space` accepted: canonical, round-trips through its text and
/// JSON forms, and counts.
pub fn check_arch(space: &dyn SearchSpace, arch: &Architecture, input: &str) {
    let genome = space.validate(arch).unwrap_or_else(|e| panic!("accepted {input:?} does not validate: {e}"));
    assert_eq!(&space.decode(&genome), arch, "accepted {input:?} is not in canonical form");
    let text = space.format_arch(arch);
    let again = space
        .parse_arch(&text)
        .unwrap_or_else(|e| panic!("{input:?} was accepted, its text form `{text}` is refused: {e}"));
    assert_eq!(&again, arch, "`{text}` (the text form of {input:?}) reads back as another architecture");
    assert_eq!(space.format_arch(&again), text, "the text form of {input:?} is not stable");
    let json = serde_json::to_string(arch).expect("an architecture serialises");
    let back: Architecture = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("the JSON form `{json}` of {input:?} does not read back: {e}"));
    let back = space.validate(&back).unwrap_or_else(|e| panic!("the JSON form `{json}` of {input:?} is refused: {e}"));
    assert_eq!(back, genome, "the JSON form `{json}` of {input:?} reads back as another architecture");
    if let Err(e) = count_network(space, arch) {
        panic!("accepted `{text}` does not count: {e}");
    }
}

/// Checks a space that was built from `input`: options, their text forms and shapes, the
/// teacher and a few sampled architectures.
pub fn check_space(space: &dyn SearchSpace, input: &str) {
    let blocks = space.blocks();
    assert!(!blocks.is_empty(), "a space without blocks from {input:?}");
    for (b, spec) in blocks.iter().enumerate() {
        assert!(!spec.options.is_empty(), "block {b} has no options, from {input:?}");
        for (i, option) in spec.options.iter().enumerate() {
            let text = spec.format_option(option);
            let parsed = spec
                .parse_option(b, &text)
                .unwrap_or_else(|e| panic!("block {b} option `{text}` does not read back: {e}; from {input:?}"));
            let index = spec
                .option_index(b, &parsed)
                .unwrap_or_else(|e| panic!("block {b} option `{text}` reads back as no option: {e}; from {input:?}"));
            assert_eq!(index, i, "block {b} option `{text}` reads back as option {index}, not {i}; from {input:?}");
            let layers = space
                .block_layers(b, option)
                .unwrap_or_else(|e| panic!("block {b} option `{text}` has no layers: {e}; from {input:?}"));
            let count = count_layers(&format!("b{b}"), &layers, spec.input)
                .unwrap_or_else(|e| panic!("block {b} option `{text}` does not count: {e}; from {input:?}"));
            assert_eq!(
                count.output, spec.output,
                "block {b} option `{text}` maps {:?} to {:?}, the block's output is {:?}; from {input:?}",
                spec.input, count.output, spec.output
            );
        }
    }
    check_arch(space, &space.teacher(), &format!("the teacher of {input:?}"));
    let mut rng = SplitMix64::new(fnv1a(input));
    for _ in 0..4 {
        let arch = space.decode(&space.sample(&mut rng));
        check_arch(space, &arch, &format!("a sample of {input:?}"));
    }
}

/// Pieces that parsers treat specially, spliced in by [`mutate`].
const TOKENS: &[&str] = &[
    "-",
    "/",
    ":",
    "=",
    "\n",
    " ",
    "\"",
    "0",
    "1",
    "-1",
    "1.5",
    "0.75",
    "1e300",
    "nan",
    "inf",
    "-inf",
    "true",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "\"\"",
    "[",
    "]",
    "[]",
    "[[block]]\n",
    "[block.choices]\n",
    "[[stem]]\n",
    "[[head]]\n",
    "type = \"classifier\"\n",
    "type = \"mbconv\"\n",
    "t = [\"transformer\", \"conv_mixer\", \"patch_embed\", \"classifier\", \"pointwise\"]\n",
    "d = [1, 16, 17]\n",
    "k = [0, 1, 2, 3, 5, 7, 9]\n",
    "e = [0, 1, 6]\n",
    "se = [true, false]\n",
    "stride = 4\n",
    "out = 0\n",
    "act = [\"swish\", \"gelu\", \"none\"]\n",
    "teacher = \"\"\n",
    "mobilenet:",
    "efficientnet:",
    "attention:",
    "tinynet:",
    "k3",
    "e6",
    "d2",
    "se0",
    "se1",
    "w1",
    "w0.5",
    "tmb",
    "tfused",
    "aswish",
    "xattn",
    "xconv",
    "h3",
    "m4",
];

/// A deterministic mutation of `data`: one to four bit flips, byte replacements, deletions,
/// duplications, truncations, token insertions or splices with `other`, drawn from `rng`.
pub fn mutate(data: &[u8], other: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut out = data.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        let at = rng.below(len + 1);
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let i = rng.below(len);
                out[i] = token[rng.below(token.len())];
            }
            2 => {
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at..end);
            }
            3 => {
                let end = (at + 1 + rng.below(32)).min(len);
                let piece = out[at..end].to_vec();
                let to = rng.below(len + 1);
                out.splice(to..to, piece);
            }
            4 => out.truncate(at),
            5 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            _ => {
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out
}
