//! `donna arch …`: sample, show and check architectures.

use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};
use donna_sdk::network::count_network;
use donna_sdk::{artifact, Architecture, SearchSpace, SplitMix64};

use crate::space_args::{ConfigArgs, SpaceArgs};
use crate::table::{millions, render, thousands};
use crate::usage;

#[derive(Subcommand)]
pub enum ArchCommand {
    /// Print random architectures of a space, one per line, in the text form.
    Sample(SampleArgs),
    /// Print a per-block table (option, output shape, params, MACs) and totals.
    Show(ShowArgs),
    /// Print the space's teacher (reference) architecture.
    Teacher(SpaceArgs),
    /// List the options of one block.
    Options(OptionsArgs),
}

#[derive(Args)]
pub struct SampleArgs {
    #[command(flatten)]
    space: SpaceArgs,
    /// Seed of the sampler: the same seed gives the same architectures.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How many architectures.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Print JSON (one object per line) instead of the text form.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// An architecture (`SPACE:OPT/OPT/...`), `SPACE:teacher|smallest|largest`, or a JSON file.
    arch: String,
    #[command(flatten)]
    config: ConfigArgs,
    /// Print the architecture and its counters as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct OptionsArgs {
    #[command(flatten)]
    space: SpaceArgs,
    /// Block index.
    #[arg(long)]
    block: usize,
}

pub fn run(cmd: ArchCommand) -> anyhow::Result<()> {
    match cmd {
        ArchCommand::Sample(a) => sample(&a),
        ArchCommand::Show(a) => show(&a),
        ArchCommand::Teacher(a) => {
            let space = a.build()?;
            println!("{}", space.format_arch(&space.teacher()));
            Ok(())
        }
        ArchCommand::Options(a) => options(&a),
    }
}

fn sample(a: &SampleArgs) -> anyhow::Result<()> {
    let space = a.space.build()?;
    let mut rng = SplitMix64::derive(a.seed, "arch-sample");
    for _ in 0..a.count {
        let arch = space.decode(&space.sample(&mut rng));
        if a.json {
            println!("{}", serde_json::to_string(&arch)?);
        } else {
            println!("{}", space.format_arch(&arch));
        }
    }
    Ok(())
}

/// Reads an architecture given as text or as a JSON file, and the space it belongs to.
pub fn load_arch(text: &str, config: &ConfigArgs) -> anyhow::Result<(Box<dyn SearchSpace>, Architecture)> {
    let path = Path::new(text);
    if text.ends_with(".json") || (path.is_file() && !text.contains(':')) {
        let arch: Architecture = artifact::read_json(path)?;
        let space = config.build(&arch.space)?;
        space.validate(&arch).with_context(|| format!("{}", path.display()))?;
        return Ok((space, arch));
    }
    let Some((name, _)) = text.split_once(':') else {
        return usage(format!("`{text}` is neither an architecture (`SPACE:OPT/OPT/...`) nor a .json file"));
    };
    let space = config.build(name)?;
    let (_, arch) = load_arch_in(text, space.as_ref())?;
    Ok((space, arch))
}

/// `SPACE:teacher`, `SPACE:smallest` and `SPACE:largest` name these architectures of a space.
fn named_arch(text: &str, space: &dyn SearchSpace) -> anyhow::Result<Option<Architecture>> {
    let body = text.split_once(':').map_or(text, |(_, b)| b);
    Ok(match body {
        "teacher" => Some(space.teacher()),
        "smallest" => Some(donna_sdk::teacher::extreme_architecture(space, false)?),
        "largest" => Some(donna_sdk::teacher::extreme_architecture(space, true)?),
        _ => None,
    })
}

/// Reads an architecture of `space` given as text or as a JSON file.
pub fn load_arch_in(text: &str, space: &dyn SearchSpace) -> anyhow::Result<(String, Architecture)> {
    let path = Path::new(text);
    if text.ends_with(".json") || (path.is_file() && !text.contains(':')) {
        let arch: Architecture = artifact::read_json(path)?;
        space.validate(&arch).with_context(|| format!("{}", path.display()))?;
        return Ok((space.format_arch(&arch), arch));
    }
    let arch = match named_arch(text, space)? {
        Some(arch) => arch,
        None => space.parse_arch(text)?,
    };
    Ok((space.format_arch(&arch), arch))
}

fn show(a: &ShowArgs) -> anyhow::Result<()> {
    let (space, arch) = load_arch(&a.arch, &a.config)?;
    let count = count_network(space.as_ref(), &arch)?;
    if a.json {
        let doc = serde_json::json!({
            "text": space.format_arch(&arch),
            "architecture": arch,
            "config": space.config(),
            "parts": count.parts.iter().map(|p| serde_json::json!({
                "name": p.name, "input": p.input, "output": p.output, "counters": p.counters,
                "activation_bytes_fp32": p.counters.activation_bytes(4),
                "weight_bytes_fp32": p.counters.weight_bytes(4),
            })).collect::<Vec<_>>(),
            "total": count.total,
            "activation_bytes_fp32": count.total.activation_bytes(4),
            "weight_bytes_fp32": count.total.weight_bytes(4),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for (i, part) in count.parts.iter().enumerate() {
        let option = match i {
            0 => "(fixed)".to_owned(),
            _ if i == count.parts.len() - 1 => "(fixed)".to_owned(),
            _ => space.blocks()[i - 1].format_option(&arch.blocks[i - 1]),
        };
        rows.push(vec![
            part.name.clone(),
            option,
            part.layers.len().to_string(),
            part.output.to_string(),
            thousands(part.counters.params),
            millions(part.counters.macs),
            format!("{:.2}", part.counters.activation_bytes(4) as f64 / 1e6),
        ]);
    }
    rows.push(vec![
        "total".into(),
        String::new(),
        count.parts.iter().map(|p| p.layers.len()).sum::<usize>().to_string(),
        String::new(),
        thousands(count.total.params),
        millions(count.total.macs),
        format!("{:.2}", count.total.activation_bytes(4) as f64 / 1e6),
    ]);
    println!("{}", space.format_arch(&arch));
    let c = space.config();
    println!(
        "input {}x{}x{}, width x{}, {} classes",
        c.in_channels, c.resolution, c.resolution, c.width_mult, c.num_classes
    );
    print!("{}", render(&["part", "option", "layers", "output", "params", "MACs", "act. MB (fp32)"], &rows));
    Ok(())
}

fn options(a: &OptionsArgs) -> anyhow::Result<()> {
    let space = a.space.build()?;
    let Some(block) = space.blocks().get(a.block) else {
        return usage(format!(
            "block {} does not exist: space `{}` has {} blocks",
            a.block,
            space.name(),
            space.blocks().len()
        ));
    };
    let dims: Vec<String> = block.dims.iter().map(|d| format!("{} ({}) in {}", d.key, d.name, d.allowed())).collect();
    println!("block {}: {} options; {}", a.block, block.options.len(), dims.join(", "));
    for rule in &block.rules {
        println!("rule: {rule}");
    }
    for o in &block.options {
        println!("{}", block.format_option(o));
    }
    Ok(())
}
