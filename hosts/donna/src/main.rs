//! `donna`: the command line of the donna NAS SDK. A thin host: it parses arguments, finds
//! spaces, devices and searchers in the registry, and calls the SDK's engines.

// The linker drops a crate nobody references, and with it the crate's `inventory`
// registrations: name every built-in plugin here.
use donna_datasets as _;
use donna_device_agent as _;
use donna_device_measured as _;
use donna_device_s20 as _;
use donna_device_v100 as _;
use donna_layers as _;
use donna_searcher_evolution as _;
use donna_searcher_nsga2 as _;
use donna_searcher_random as _;
use donna_space_attention as _;
use donna_space_efficientnet as _;
use donna_space_mobilenet as _;

mod cmd_arch;
mod cmd_bench;
mod cmd_bench_search;
mod cmd_compress;
mod cmd_cost;
mod cmd_data;
mod cmd_distill;
mod cmd_explore;
mod cmd_list;
mod cmd_plan;
mod cmd_plugins;
mod cmd_predictor;
mod cmd_run;
mod cmd_search;
mod cmd_verify;
mod progress_bar;
mod run_args;
mod space_args;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use donna_sdk::SdkError;

/// Hardware-aware neural architecture search (DONNA: blockwise distillation, accuracy
/// predictor, evolutionary search per device).
#[derive(Parser)]
#[command(name = "donna", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Load a plugin library (layer types, search spaces, devices) before running the
    /// command; repeatable. See docs/plugins.md.
    #[arg(long = "plugin", value_name = "PATH.so", global = true)]
    plugins: Vec<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the search spaces with their block count and exact size.
    Spaces,
    /// List the layer types that block options can be made of.
    Layers,
    /// List the hardware targets (cost models).
    Devices,
    /// List the search algorithms.
    Searchers,
    /// List the loaded plugins (`--plugin`) and what each contributes.
    Plugins,
    /// Latency of architectures on a hardware target.
    Cost(cmd_cost::CostArgs),
    /// Sample, show and check architectures.
    #[command(subcommand)]
    Arch(cmd_arch::ArchCommand),
    /// List the dataset formats.
    Datasets,
    /// Describe a dataset (size, classes, normalisation) and optionally write a preview grid.
    Data(cmd_data::DataArgs),
    /// Create a run directory (DIR/run.json) fixing space, data, preset and seed.
    Init(cmd_run::InitArgs),
    /// Train the space's reference network (the teacher), or import pretrained weights.
    Teacher(cmd_run::TeacherArgs),
    /// Distil every selected option of every block against the teacher (NSR quality table).
    Distill(cmd_distill::DistillCommand),
    /// Train a baseline from scratch with the teacher's schedule (an architecture, the
    /// smallest or largest of the space, or a linear classifier), for comparison.
    Train(cmd_run::TrainModelArgs),
    /// Fit the accuracy predictor: finetune sampled architectures from their distilled blocks,
    /// cross-validate predictors from block NSRs to accuracy, report rank correlation.
    Predictor(cmd_predictor::PredictorCommand),
    /// Predicted accuracy of architectures, with its uncertainty.
    Predict(cmd_predictor::PredictArgs),
    /// Search a device: a Pareto front of predicted accuracy against latency.
    Search(cmd_search::SearchCommand),
    /// Finetune models of a device's front (or given architectures) with KD and export them
    /// (safetensors, architecture JSON, TorchScript).
    Finetune(cmd_search::FinetuneCommand),
    /// Hardware-aware compression: a model becomes the teacher of a space of smaller options
    /// around its blocks; the most accurate architecture within the latency budget is
    /// finetuned from its distilled blocks (before/after table).
    Compress(cmd_compress::CompressArgs),
    /// Every work unit of a run (teacher epochs, BKD units, predictor samples, searches,
    /// models) and its state: done, pending, stale or waiting.
    Plan(cmd_plan::PlanArgs),
    /// Check every artifact of a run against its manifest (size and SHA-256): ok, damaged or
    /// missing. Damaged artifacts are redone by the next run of their stage.
    Verify(cmd_verify::VerifyArgs),
    /// Compare search spaces on a device: teacher, distillation, predictor and search for each,
    /// then their Pareto fronts in one plot and one table.
    Explore(cmd_explore::ExploreArgs),
    /// Benchmarks (speed targets are checked here, not in tests).
    #[command(subcommand)]
    Bench(cmd_bench::BenchCommand),
    /// Run the whole pipeline on a run directory, skipping what is already done.
    Run(cmd_run::PipelineArgs),
}

fn main() -> ExitCode {
    short_openmp_spin();
    keep_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = cmd_plugins::load(&cli.plugins) {
        eprintln!("error: {e:#}");
        return ExitCode::from(exit_code(&e));
    }
    // A plugin layer that fails in its forward pass unwinds with a `PluginFailure` (tch's
    // `ModuleT` has no error path); stages that can go on catch it themselves, and anything
    // left becomes this command's error, not a crash.
    donna_sdk::error::quiet_plugin_failures();
    let result = donna_sdk::catch_plugin_failure(|| Ok(run_command(cli.command))).unwrap_or_else(|e| Err(e.into()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Keeps freed blocks in the heap instead of handing them back to the OS after every step:
/// glibc's defaults cost 1.6x in training and 3x in evaluation (libtorch allocates through the
/// same malloc), see shared/reference-figures.md.
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator tuning parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Spaces => cmd_list::spaces(),
        Command::Layers => cmd_list::layers(),
        Command::Devices => cmd_list::devices(),
        Command::Searchers => cmd_list::searchers(),
        Command::Plugins => cmd_plugins::list(),
        Command::Arch(cmd) => cmd_arch::run(cmd),
        Command::Cost(args) => cmd_cost::run(&args),
        Command::Datasets => cmd_data::datasets(),
        Command::Data(args) => cmd_data::info(&args),
        Command::Init(args) => cmd_run::init(&args),
        Command::Teacher(args) => cmd_run::teacher(&args),
        Command::Distill(args) => cmd_distill::run(&args),
        Command::Train(args) => cmd_run::train_model(&args),
        Command::Predictor(args) => cmd_predictor::run(&args),
        Command::Predict(args) => cmd_predictor::predict(&args),
        Command::Search(args) => cmd_search::run_search(&args),
        Command::Finetune(args) => cmd_search::run_finetune(&args),
        Command::Compress(args) => cmd_compress::run(&args),
        Command::Plan(args) => cmd_plan::run(&args),
        Command::Verify(args) => cmd_verify::run(&args),
        Command::Explore(args) => cmd_explore::run(&args),
        Command::Run(args) => cmd_run::pipeline(&args),
        Command::Bench(cmd) => cmd_bench::run(cmd),
    }
}

/// Restarts the process with `GOMP_SPINCOUNT=10000` unless it is set. libgomp reads it when
/// libtorch is loaded, before `main`; its default (busy-waiting up to ~300k spins between
/// parallel regions) is fine on an idle machine but turns a 10-second finetune into minutes
/// when anything else runs on a 2-core machine (measured: 562 s against ~10 s for the same
/// finetune during a compile). A short spin costs nothing measurable when idle.
fn short_openmp_spin() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GOMP_SPINCOUNT").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // exec only returns on failure; then carry on with the default spin.
    let _ = std::process::Command::new(exe).args(args).env("GOMP_SPINCOUNT", "10000").exec();
}

/// 2 for problems with what the user gave (as clap does for bad flags), 1 for the rest.
fn exit_code(e: &anyhow::Error) -> u8 {
    let user = e.chain().any(|c| {
        c.downcast_ref::<SdkError>().is_some_and(SdkError::is_user_error) || c.downcast_ref::<UsageError>().is_some()
    });
    if user {
        2
    } else {
        1
    }
}

/// A mistake in the command line or its inputs, found by the host itself.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Fails with a [`UsageError`] (exit code 2).
fn usage<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(UsageError(msg.into()).into())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_line_is_well_formed() {
        // Catches duplicate flags between flattened argument groups, which clap only reports
        // when the command is used.
        super::Cli::command().debug_assert();
    }
}
