//! The fast part of the parser fuzzing (docs/cluster.md, "Fuzzing the parsers"): every seed
//! under tests/fuzz/seeds and a few thousand deterministic mutations of them go through the
//! same invariant checks as the libFuzzer targets (`donna_sdk::fuzzing`), so a regression in a
//! parser fails `cargo test` without running the fuzzer.

use std::path::PathBuf;

use donna_layers as _;
use donna_space_attention as _;
use donna_space_efficientnet as _;
use donna_space_mobilenet as _;

use donna_sdk::fuzzing::{self, arch_spaces, mutate};
use donna_sdk::{registry, SpaceConfig, SplitMix64};

/// The committed seeds of one target with their file names, in name order. Seeds named
/// `refused-*` are inputs that broke a parser (see the last test); the others are valid.
fn named_seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/seeds").join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let seeds: Vec<_> = paths
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap()))
        .collect();
    assert!(seeds.len() >= 3, "{} has {} seeds", dir.display(), seeds.len());
    seeds
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    named_seeds(target).into_iter().map(|(_, data)| data).collect()
}

/// `count` mutations of the seeds, stacked up to three deep, each the same on every run.
fn mutations(seeds: &[Vec<u8>], count: usize, stream: &str) -> Vec<Vec<u8>> {
    let mut rng = SplitMix64::derive(10, stream);
    (0..count)
        .map(|_| {
            let mut data = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(3) {
                let other = &seeds[rng.below(seeds.len())];
                data = mutate(&data, other, &mut rng);
            }
            data
        })
        .collect()
}

#[test]
fn arch_seeds_and_their_mutations_keep_the_invariants() {
    let spaces = arch_spaces();
    let seeds = seeds("arch");
    // Every seed is a real architecture of one of the spaces.
    for seed in &seeds {
        let text = std::str::from_utf8(seed).unwrap();
        assert!(spaces.iter().any(|s| s.parse_arch(text).is_ok()), "seed {text:?} parses in no space");
    }
    let inputs = mutations(&seeds, 4000, "arch");
    let accepted = inputs
        .iter()
        .chain(&seeds)
        .filter(|data| {
            spaces.iter().fold(false, |ok, space| {
                fuzzing::arch_text(space.as_ref(), data);
                ok | std::str::from_utf8(data).is_ok_and(|t| space.parse_arch(t).is_ok())
            })
        })
        .count();
    // The mutations reach past the first check: some still parse, most do not.
    assert!(accepted > seeds.len() && accepted < inputs.len() / 2, "{accepted} of {} accepted", inputs.len());
}

#[test]
fn space_file_seeds_and_their_mutations_keep_the_invariants() {
    let seeds = seeds("space_file");
    let config = fuzzing::space_file_config();
    for (name, seed) in named_seeds("space_file") {
        let text = std::str::from_utf8(&seed).unwrap();
        let parsed = donna_sdk::space_file::parse("seed.toml", text, &config);
        assert_eq!(parsed.is_err(), name.starts_with("refused-"), "{name}: {:?}", parsed.err());
    }
    let inputs = mutations(&seeds, 2000, "space_file");
    let mut accepted = 0;
    for data in inputs.iter().chain(&seeds) {
        fuzzing::space_file(data);
        accepted += usize::from(
            std::str::from_utf8(data).is_ok_and(|t| donna_sdk::space_file::parse("m.toml", t, &config).is_ok()),
        );
    }
    assert!(accepted > seeds.len() && accepted < inputs.len() / 2, "{accepted} of {} accepted", inputs.len());
}

#[test]
fn the_built_in_spaces_keep_the_space_invariants() {
    for config in
        [SpaceConfig::default(), SpaceConfig { resolution: 32, width_mult: 0.5, num_classes: 10, in_channels: 1 }]
    {
        for provider in registry::spaces() {
            let space = provider.build(&config).unwrap();
            fuzzing::check_space(space.as_ref(), &format!("{} at {config:?}", provider.name()));
        }
    }
}

/// The inputs that broke the space-file parser, each refused now with the field at fault; the
/// files are also seeds, so the fuzzer starts from them.
#[test]
fn space_files_that_broke_the_parser_are_refused_with_the_field() {
    let cases = [
        // Found by the fuzzer: the parser checked only the teacher's option, so a space whose
        // other options fail to build (or change the block's output shape) was accepted, and
        // the failure came later, in the middle of distillation or search.
        ("option-does-not-fit", "fuzz.toml:9: block[0].choices: option `d1-heads0-mlp2-ttransformer` does not fit"),
        // Choices whose text form does not read back: the architecture strings of such options
        // were refused (`-`, `/`, empty, a longer key), or their JSON form was (NaN).
        ("negative-value", "fuzz.toml:18: block[0].choices.e: `-2` cannot be written"),
        ("slash-value", "fuzz.toml:18: block[0].choices.x: `b/c` cannot be written"),
        ("empty-value", "fuzz.toml:18: block[0].choices.x: `` cannot be written"),
        ("key-prefix", "fuzz.toml:17: block[0].choices.k: `x2` cannot be written in an architecture string as `kx2`"),
        ("nan-value", "fuzz.toml:18: block[0].choices.e: NaN is not a finite number"),
        // A 20-axis block is 3^20 options: the parser ran out of memory enumerating them.
        ("too-many-options", "fuzz.toml:11: block[0].choices: more than 4096 combinations"),
        // Found by the fuzzer: absurd sizes overflowed the layers' counting (a panic in debug
        // builds, a wrapped count in release). Settings are bounded, counts saturate, and a
        // layer's output map is bounded (`network::MAX_FEATURE_*`).
        (
            "huge-expansion",
            "fuzz.toml:11: block[0].choices: option `d1-e9223372036854775807-k3-tmbconv` does not fit: setting `e` must \
             be in 1..=1048576",
        ),
        ("huge-channels", "fuzz.toml: setting `out` must be in 1..=1048576, got 1099511627776"),
    ];
    let seeds = named_seeds("space_file");
    for (name, expected) in cases {
        let file = format!("refused-{name}.toml");
        let (_, data) = seeds.iter().find(|(n, _)| *n == file).unwrap_or_else(|| panic!("no seed {file}"));
        fuzzing::space_file(data);
        let text = std::str::from_utf8(data).unwrap();
        let err = donna_sdk::space_file::parse(fuzzing::SPACE_FILE_PATH, text, &fuzzing::space_file_config())
            .err()
            .unwrap_or_else(|| panic!("{file} is accepted"))
            .to_string();
        assert!(err.starts_with(expected), "{file}: `{err}` does not start with `{expected}`");
    }
}
