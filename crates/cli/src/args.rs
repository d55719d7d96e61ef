//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Record, replay and compare RPC traffic (HTTP/1.1, HTTP/2, gRPC).
#[derive(Debug, Parser)]
#[command(name = "reprise", version, about, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List exchanges, one line each.
    Ls(LsArgs),
    /// Show one exchange whole, with its downstream calls.
    Show(ShowArgs),
    /// Summarise a recording: counts, rates, latency per endpoint.
    Stats(StatsArgs),
    /// Import a HAR 1.2 or GoReplay (.gor) file into a tape.
    Import(ImportArgs),
    /// Export a recording to HAR 1.2.
    Export(ExportArgs),
    /// Run the built-in demo on the sample recording shipped with reprise.
    Demo(DemoArgs),
}

/// Which exchanges a command looks at.
#[derive(Debug, Args, Default, Clone)]
pub struct FilterArgs {
    /// Only these methods (repeatable; `GET,POST` works too).
    #[arg(long, value_name = "METHOD")]
    pub method: Vec<String>,
    /// Only paths matching this glob (`/api/*`; `*` also matches `/`).
    #[arg(long, value_name = "GLOB")]
    pub path: Vec<String>,
    /// Only these statuses: `404`, `5xx`, `200-299`, several with `,`.
    #[arg(long, value_name = "SPEC")]
    pub status: Vec<String>,
    /// Only exchanges recorded at or after this time (RFC 3339 or ns).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only exchanges recorded before this time (RFC 3339 or ns).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// More conditions, FIELD=VALUE: method, path, authority, status,
    /// header (`header=x-tenant:acme*`), protocol (h1, h2, grpc).
    #[arg(long = "match", value_name = "FIELD=VALUE")]
    pub matches: Vec<String>,
}

/// `reprise ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// A tape, or a HAR or .gor file (detected from its content).
    pub input: PathBuf,
    /// Which exchanges to list.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Stop after this many lines.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Keep reading as the tape grows (like `tail -f`); stop with Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
}

/// `reprise show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A tape, or a HAR or .gor file.
    pub input: PathBuf,
    /// The exchange id (hex), or a unique prefix of at least 6 digits.
    pub id: String,
    /// The exchange as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Show bodies whole instead of cutting them at 64 KiB.
    #[arg(long)]
    pub full: bool,
}

/// `reprise stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// A tape, or a HAR or .gor file.
    pub input: PathBuf,
    /// Which exchanges to count.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// The statistics as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `reprise import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A HAR 1.2 or GoReplay file; the format is read from the content.
    pub input: PathBuf,
    /// The tape to write.
    #[arg(long, short, value_name = "TAPE")]
    pub out: PathBuf,
    /// Append to the tape if it exists (by default an existing tape is an error).
    #[arg(long)]
    pub append: bool,
}

/// `reprise export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A tape, or a HAR or .gor file.
    pub input: PathBuf,
    /// The HAR file to write (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub har: PathBuf,
    /// Which exchanges to export.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `reprise demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo's tapes (default: a temporary directory,
    /// removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}
