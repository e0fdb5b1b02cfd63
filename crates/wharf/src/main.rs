//! The `wharf` command: serve the registry and maintain it.

// The workspace denies printing so the library never writes to the terminal; here, what the
// commands print is their interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod accounts;
mod admin_client;
mod allocator;
mod backup;
mod closed_output;
mod logging;
mod progress;
mod read_only;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use std::time::Duration;
use wharf_config::Config;

use target::Target;
use wharf_registry::Registry;
use wharf_registry::{FsckReport, GcReport};
use wharf_server::{ServeOptions, serve_with};

/// Wharf, a container image registry.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The configuration file (YAML). Without one, the defaults apply; WHARF_<SECTION>_<KEY>
    /// environment variables override either.
    #[arg(long, short, global = true, env = "WHARF_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry (by default on 127.0.0.1:5000, with data in ./wharf-data).
    Serve {
        /// Listen on this address instead of server.listen.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Keep data in this folder instead of storage.data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve without authentication (auth.mode: none) on an address other than loopback:
        /// only when something in front of Wharf authenticates.
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Hold the registry read-only, release it, or show its state (over the admin API).
    #[command(subcommand)]
    ReadOnly(read_only::ReadOnlyCommand),
    /// Back up the registry consistently, or check a backup.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Restore a backup into an empty data folder (then checked with fsck).
    Restore {
        /// The backup folder, or a bucket's prefix `s3://bucket/prefix` (reached with
        /// storage.s3's endpoint and keys).
        #[arg(long)]
        from: PathBuf,
        /// The data folder to create (it must not exist, or be empty).
        #[arg(long)]
        data: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage users: add, remove, passwd, superuser, grant, grants, list.
    User {
        #[command(subcommand)]
        command: accounts::UserCommand,
        #[command(flatten)]
        via: accounts::Via,
    },
    /// Manage organizations and their teams.
    Org {
        #[command(subcommand)]
        command: accounts::OrgCommand,
        #[command(flatten)]
        via: accounts::Via,
    },
    /// Manage robot accounts (organization+name, with tokens for CI).
    Robot {
        #[command(subcommand)]
        command: accounts::RobotCommand,
        #[command(flatten)]
        via: accounts::Via,
    },
    /// Manage repositories' visibility and grants.
    Repo {
        #[command(subcommand)]
        command: accounts::RepoCommand,
        #[command(flatten)]
        via: accounts::Via,
    },
    /// Collect garbage once: expired uploads, and blobs no manifest uses (after gc.grace).
    /// When a server runs on the data folder, it does the collection (through its admin API),
    /// so the collection is one of its writes.
    Gc {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The running server's URL (default: the server running on the configured data folder,
        /// else that folder itself; it must hold a registry).
        #[arg(long, env = "WHARF_URL")]
        url: Option<String>,
    },
    /// Check that every manifest's blobs and children exist and every blob matches its digest.
    /// Exits with status 1 when something is wrong.
    Fsck {
        /// Only check that blob content is present with the right size, without hashing it.
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a fully commented configuration file with the default values.
    Example,
    /// Check the configuration (file and environment) and print the values in effect.
    Check,
}

fn main() -> ExitCode {
    allocator::tune();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        closed_output::end_quietly_when_closed();
    }
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("wharf: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli {
        config: config_file,
        command,
    } = cli;
    let load_config = || -> anyhow::Result<Config> {
        Ok(Config::load(config_file.as_deref(), std::env::vars())?)
    };
    match command {
        Command::Config(ConfigCommand::Example) => {
            print!("{}", wharf_config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) => {
            let config = load_config()?;
            let text = serde_saphyr::to_string(&config).context("printing the configuration")?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            data_dir,
            insecure_no_auth,
        } => {
            let mut config = load_config()?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            if let Some(data_dir) = data_dir {
                config.storage.data_dir = data_dir;
            }
            let set_log_level = logging::init(&config.log)?;
            runtime()?.block_on(async {
                let listener = tokio::net::TcpListener::bind(config.server.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.server.listen))?;
                let reload = Arc::new(tokio::sync::Notify::new());
                forward_hangups(reload.clone());
                let options = ServeOptions {
                    config_file: config_file.clone(),
                    environment: std::env::vars().collect(),
                    reload: Some(reload),
                    set_log_level: Some(set_log_level),
                    insecure_no_auth,
                };
                serve_with(config, listener, shutdown_signal(), options).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Backup(command) => {
            let config = load_config()?;
            let _ = logging::init(&config.log)?;
            let succeeded = runtime()?.block_on(backup::run(command, &config))?;
            Ok(if succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Restore { from, data, json } => {
            let config = load_config()?;
            let _ = logging::init(&config.log)?;
            let clean = runtime()?.block_on(backup::restore(&from, &data, &config, json))?;
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::User { command, via } => accounts(
            &load_config()?,
            accounts::AccountCommand::User(command),
            &via,
        ),
        Command::Org { command, via } => accounts(
            &load_config()?,
            accounts::AccountCommand::Org(command),
            &via,
        ),
        Command::Robot { command, via } => accounts(
            &load_config()?,
            accounts::AccountCommand::Robot(command),
            &via,
        ),
        Command::Repo { command, via } => accounts(
            &load_config()?,
            accounts::AccountCommand::Repo(command),
            &via,
        ),
        Command::ReadOnly(command) => {
            let config = load_config()?;
            let reached = runtime()?.block_on(read_only::run(command, &config))?;
            Ok(if reached {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Gc { json, url } => {
            let config = load_config()?;
            let _ = logging::init(&config.log)?;
            runtime()?.block_on(async {
                let (report, registry) = collect_garbage(&config, url.as_deref()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    println!(
                        "{registry}\nexpired uploads: {}\nforgotten upload records: {}\npruned repository links: {}\n\
                         deleted blobs: {} ({} bytes)\nleftover objects deleted: {}\nleftover staged uploads deleted: {}",
                        report.expired_uploads,
                        report.forgotten_sessions,
                        report.pruned_links,
                        report.deleted_blobs,
                        report.deleted_bytes,
                        report.orphan_objects,
                        report.orphan_staging
                    );
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Fsck { quick, json } => {
            let config = load_config()?;
            let _ = logging::init(&config.log)?;
            runtime()?.block_on(async {
                let registry = open(&config).await?;
                let report = registry.fsck(!quick).await;
                registry.close().await;
                let report = report?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print_fsck(&report);
                }
                Ok(if report.is_clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            })
        }
    }
}

/// One garbage collection through the admin API: by the server running on the data folder (or
/// at `url`), else in process, holding the data folder so that no server starts meanwhile.
/// Returns the report and which registry collected.
async fn collect_garbage(config: &Config, url: Option<&str>) -> anyhow::Result<(GcReport, String)> {
    let target = Target::open(config, url).await?;
    let registry = target.describe();
    let sent = target
        .send(
            reqwest::Method::POST,
            "/api/v1/gc",
            None,
            Duration::from_secs(24 * 3600),
        )
        .await;
    target.close().await;
    let (_, answer) = sent?;
    Ok((serde_json::from_value(answer)?, registry))
}

fn accounts(
    config: &Config,
    command: accounts::AccountCommand,
    via: &accounts::Via,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(accounts::run(command, via, config))?;
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn open(config: &Config) -> anyhow::Result<Registry> {
    let paths = config.data_paths();
    if !config.metadata.is_postgres() && !paths.metadata.exists() {
        anyhow::bail!(
            "no registry in {}: its metadata database {} does not exist",
            config.storage.data_dir.display(),
            paths.metadata.display()
        );
    }
    Ok(config.open_registry().await?)
}

fn print_fsck(report: &FsckReport) {
    println!(
        "checked {} blobs ({} bytes hashed) and {} manifests",
        report.blobs_checked, report.bytes_verified, report.manifests_checked
    );
    if report.unused_objects > 0 {
        println!(
            "{} stored objects are used by no blob (left by an interrupted write; `wharf gc` removes them)",
            report.unused_objects
        );
    }
    if report.absent_references > 0 {
        println!(
            "{} references name content the repository does not have, as sparse manifests may (limits.sparse_manifests)",
            report.absent_references
        );
    }
    if report.is_clean() {
        println!("no problems found");
    } else {
        println!("{} problems found:", report.problems.len());
        for problem in &report.problems {
            println!("  {}", serde_json::to_string(problem).unwrap_or_default());
        }
    }
}

/// Turns each SIGHUP into a request to re-read the configuration. The handler is installed
/// before this returns: a SIGHUP right after the server says it is serving must not kill it.
fn forward_hangups(reload: Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    reload.notify_one();
                }
            });
        }
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP; the configuration file is still watched")
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled: a signal right after the server says it is serving must stop it
/// cleanly, not kill it.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut terminate), Ok(mut interrupt)) = signals else {
            tracing::error!("cannot listen for shutdown signals; stop the server with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
        }
    }
}
