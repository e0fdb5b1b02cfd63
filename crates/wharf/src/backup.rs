//! `wharf backup create|verify` and `wharf restore`.
//!
//! A backup of a running registry goes through its admin API (the server takes the snapshot;
//! this command copies it and the blobs from anywhere); a backup of a stopped registry works on
//! its data folder, which it holds meanwhile so that no server starts.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use clap::Subcommand;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wharf_backup::{BackupManifest, BackupSource, Destination, LocalSource, copy_backup};
use wharf_config::Config;
use wharf_config::HumanDuration;
use wharf_core::digest::Digest;
use wharf_gate::HoldSource;
use wharf_registry::backups::{BackupError, BackupId, BackupSnapshot, SnapshotOptions};
use wharf_storage::BlobStream;

use crate::admin_client::AdminClient;
use crate::progress::{ProgressReport, size};
use crate::target::Location;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Take a consistent backup: the registry is read-only only while its metadata is
    /// snapshotted, then the blobs are copied while it is writable again.
    Create {
        /// The backup folder (created if missing), or a bucket's prefix `s3://bucket/prefix`
        /// (reached with storage.s3's endpoint and keys); an earlier backup's gets only what is
        /// new.
        #[arg(long, required_unless_present = "hold_only")]
        to: Option<PathBuf>,
        /// Only hold the registry read-only (for volume snapshots taken by other tools): wait
        /// until read-only is in effect, say so, and release on exit (SIGINT or SIGTERM).
        #[arg(long, conflicts_with = "to")]
        hold_only: bool,
        /// With --hold-only: the hold's TTL, renewed while this command runs; if it dies, the
        /// registry is writable again after this at worst.
        #[arg(long, default_value = "2m")]
        ttl: HumanDuration,
        /// The hold's TTL while the metadata is snapshotted.
        #[arg(long, default_value = "15m")]
        hold_ttl: HumanDuration,
        /// How long garbage collection keeps the snapshot's blobs after the last renewal: the
        /// copy renews the lease as it goes; if this command dies, it lapses within this.
        #[arg(long, default_value = "10m")]
        lease_ttl: HumanDuration,
        /// How long to wait for writes under way to finish before giving up.
        #[arg(long, default_value = "5m")]
        wait: HumanDuration,
        /// The running registry's URL (default: the server running on the configured data
        /// folder, else that folder itself, backed up directly; it must hold a registry).
        #[arg(long, env = "WHARF_URL")]
        url: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that a backup is complete and intact (every blob re-hashed).
    Verify {
        /// The backup: a folder, or a bucket's prefix (`s3://bucket/prefix`).
        dir: PathBuf,
        /// Check presence and sizes only, without hashing.
        #[arg(long)]
        quick: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `backup` command; returns whether it succeeded.
pub async fn run(command: BackupCommand, config: &Config) -> anyhow::Result<bool> {
    match command {
        BackupCommand::Create {
            to: Some(to),
            hold_only: false,
            hold_ttl,
            lease_ttl,
            wait,
            url,
            json,
            ..
        } => {
            let options = SnapshotOptions {
                hold_ttl: hold_ttl.0,
                lease_ttl: lease_ttl.0,
                wait: wait.0,
                actor: "wharf backup".to_owned(),
                source: HoldSource::Cli,
            };
            let manifest = create(&to, url.as_deref(), config, &options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&manifest)?);
            } else {
                print_backup(&to, &manifest);
            }
            Ok(true)
        }
        BackupCommand::Create {
            hold_only: true,
            ttl,
            wait,
            url,
            ..
        } => hold_only(url.as_deref(), config, ttl.0, wait.0).await,
        BackupCommand::Create { .. } => bail!("give --to <folder>, or --hold-only"),
        BackupCommand::Verify { dir, quick, json } => {
            let progress = ProgressReport::new("checked");
            let report = match backup_bucket(&dir, config)? {
                None => wharf_backup::verify(&dir, !quick, &progress).await?,
                Some(settings) => {
                    let backup = wharf_storage::S3Folder::connect(&settings).await?;
                    wharf_backup::verify_bucket(&backup, !quick, &progress).await?
                }
            };
            progress.done();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if report.is_good() {
                println!(
                    "backup {} is complete and intact: {} blobs, {} hashed",
                    report.id.as_deref().unwrap_or("?"),
                    report.blobs_checked,
                    size(report.bytes_checked)
                );
            } else {
                println!("backup {} is NOT good:", dir.display());
                for problem in &report.problems {
                    println!("  {problem}");
                }
            }
            Ok(report.is_good())
        }
    }
}

/// Takes a backup into `to`.
async fn create(
    to: &Path,
    url: Option<&str>,
    config: &Config,
    options: &SnapshotOptions,
) -> anyhow::Result<BackupManifest> {
    // The registry is found first, so that a command pointed at none creates nothing; then the
    // destination is checked (and locked) before the registry is made read-only.
    let location = Location::find(config, url)?.into_client(config)?;
    let destination = match backup_bucket(to, config)? {
        None => Destination::create(to)?,
        Some(settings) => {
            Destination::create_in_bucket(wharf_storage::S3Folder::connect(&settings).await?)
                .await?
        }
    };
    let progress = ProgressReport::new("copied");
    let data_dir = &config.storage.data_dir;
    // A server (at the URL, or running on the data folder) takes the snapshot; without one the
    // data folder is backed up directly.
    let manifest = match location {
        Err(_lock) => {
            let registry = config.open_registry().await?;
            let stop = CancellationToken::new();
            let gate = registry.gate().clone();
            let following = tokio::spawn({
                let stop = stop.clone();
                async move { gate.run(stop).await }
            });
            let copied = async {
                let snapshot = registry.take_backup_snapshot(options).await?;
                announce(&snapshot);
                let source = LocalSource::new(registry.clone(), snapshot.id.clone()).await?;
                let label = data_dir.display().to_string();
                let copied = until_interrupted(copy_backup(
                    &snapshot,
                    &source,
                    destination,
                    &progress,
                    &label,
                ))
                .await;
                registry.end_backup(&snapshot.id).await?;
                copied
            }
            .await;
            stop.cancel();
            let _ = following.await;
            registry.close().await;
            copied?
        }
        Ok(client) => {
            let body = json!({
                "hold_ttl": HumanDuration(options.hold_ttl).to_string(),
                "lease_ttl": HumanDuration(options.lease_ttl).to_string(),
                "wait": HumanDuration(options.wait).to_string(),
            });
            // Dying while the server takes the snapshot is harmless: it releases its hold, and
            // ends a snapshot nobody waits for.
            let (_, answer) = client
                .send(
                    reqwest::Method::POST,
                    "/api/v1/backups",
                    Some(body),
                    options.hold_ttl + Duration::from_secs(60),
                )
                .await
                .context("taking the backup snapshot")?;
            let snapshot: BackupSnapshot = serde_json::from_value(answer)?;
            announce(&snapshot);
            let label = client.url().to_owned();
            let source = ApiSource {
                client,
                id: snapshot.id.clone(),
            };
            let copied = until_interrupted(copy_backup(
                &snapshot,
                &source,
                destination,
                &progress,
                &label,
            ))
            .await;
            let ended = source
                .client
                .send(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/backups/{}", snapshot.id),
                    None,
                    Duration::from_secs(60),
                )
                .await;
            let manifest = copied?;
            ended.context("ending the backup (its lease lapses by itself)")?;
            manifest
        }
    };
    progress.done();
    Ok(manifest)
}

/// Says, as soon as it is known, which backup runs and how long the registry was read-only.
fn announce(snapshot: &BackupSnapshot) {
    eprintln!(
        "backup {}: snapshot taken, the registry was read-only for {}; copying {} blobs ({})",
        snapshot.id,
        humantime::format_duration(Duration::from_millis(snapshot.read_only_ms())),
        snapshot.counts.blobs,
        size(snapshot.counts.bytes)
    );
}

/// Runs a copy until it ends or SIGINT/SIGTERM arrives; then the caller ends the backup (the
/// folder keeps its previous state).
async fn until_interrupted<T>(
    copy: impl Future<Output = Result<T, BackupError>>,
) -> anyhow::Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        copied = copy => Ok(copied?),
        _ = terminate.recv() => bail!("interrupted; the backup folder keeps its previous state"),
        _ = interrupt.recv() => bail!("interrupted; the backup folder keeps its previous state"),
    }
}

fn print_backup(to: &Path, manifest: &BackupManifest) {
    println!("backup {} complete in {}", manifest.id, to.display());
    println!(
        "  read-only for {} (drain {}), from {} to {}",
        humantime::format_duration(Duration::from_millis(manifest.read_only.read_only_ms)),
        humantime::format_duration(Duration::from_millis(manifest.read_only.drain_ms)),
        manifest.read_only.from,
        manifest.read_only.until,
    );
    println!(
        "  {} repositories, {} manifests, {} tags, {} blobs ({})",
        manifest.counts.repositories,
        manifest.counts.manifests,
        manifest.counts.tags,
        manifest.counts.blobs,
        size(manifest.counts.bytes)
    );
    println!(
        "  copied {} blobs ({}); {} were already in the folder",
        manifest.copy.copied,
        size(manifest.copy.copied_bytes),
        manifest.copy.reused
    );
}

/// `--hold-only`: holds the registry read-only while this command runs.
async fn hold_only(
    url: Option<&str>,
    config: &Config,
    ttl: Duration,
    wait: Duration,
) -> anyhow::Result<bool> {
    let client = match Location::find(config, url)?.into_client(config)? {
        Ok(client) => client,
        Err(_) if config.metadata.is_postgres() => bail!(
            "name the server to hold read-only through with --url (or WHARF_URL): with \
             PostgreSQL metadata, servers are not found from the data folder"
        ),
        Err(_lock) => bail!(
            "no server runs on {}: nothing writes to it, snapshot it as it is",
            config.storage.data_dir.display()
        ),
    };
    use tokio::signal::unix::{SignalKind, signal};
    // Listening before anything is held: a signal right after "in effect" must release.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let id = BackupId::generate();
    let hold = id.hold_name();
    let path = format!("/api/v1/state/holds/{hold}");
    let body =
        json!({ "reason": format!("volume snapshot {id}"), "ttl": HumanDuration(ttl).to_string() });
    let (status, _) = client
        .send(
            reqwest::Method::PUT,
            &format!("{path}?wait={}", HumanDuration(wait)),
            Some(body.clone()),
            wait + Duration::from_secs(30),
        )
        .await?;
    if status != reqwest::StatusCode::OK {
        let _ = client
            .send(
                reqwest::Method::DELETE,
                &path,
                None,
                Duration::from_secs(30),
            )
            .await;
        bail!(
            "read-only was not in effect after {}: writes under way did not finish; released",
            HumanDuration(wait)
        );
    }
    println!("read-only in effect (hold {hold}); release it with SIGINT or SIGTERM");
    let mut held_until = std::time::Instant::now() + ttl;
    let outcome: anyhow::Result<()> = loop {
        tokio::select! {
            _ = terminate.recv() => break Ok(()),
            _ = interrupt.recv() => break Ok(()),
            () = tokio::time::sleep(ttl / 4) => {}
        }
        // Renewed while this command lives; if it dies, the TTL ends the hold. A renewal that
        // fails is retried until the hold would lapse; one that finds the hold gone means the
        // registry was writable meanwhile, which the snapshot must know.
        match client
            .send(reqwest::Method::PUT, &path, Some(body.clone()), ttl / 4)
            .await
        {
            Ok((_, answer)) if answer["created"] == false => {
                held_until = std::time::Instant::now() + ttl
            }
            Ok(_) => {
                break Err(anyhow::anyhow!(
                    "the hold had ended (expired or released): the registry may have been written to meanwhile"
                ));
            }
            Err(error) if std::time::Instant::now() + ttl / 4 < held_until => {
                eprintln!("cannot renew the hold, retrying: {error:#}");
            }
            Err(error) => {
                break Err(error.context("the hold could not be renewed before it lapsed"));
            }
        }
    };
    let released = client
        .send(
            reqwest::Method::DELETE,
            &path,
            None,
            Duration::from_secs(30),
        )
        .await
        .context("releasing the hold (its TTL ends it otherwise)");
    outcome?;
    released?;
    println!("released hold {hold}");
    Ok(true)
}

/// A backup read through a running registry's admin API.
struct ApiSource {
    client: AdminClient,
    id: BackupId,
}

fn source_error(error: anyhow::Error) -> BackupError {
    BackupError::Source(format!("{error:#}"))
}

#[async_trait]
impl BackupSource for ApiSource {
    async fn metadata(&self) -> Result<BlobStream, BackupError> {
        self.client
            .stream(&format!("/api/v1/backups/{}/metadata", self.id))
            .await
            .map_err(source_error)
    }

    async fn blobs(
        &self,
        last: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>, BackupError> {
        let mut path = format!("/api/v1/backups/{}/blobs?n={limit}", self.id);
        if let Some(last) = last {
            path.push_str(&format!("&last={last}"));
        }
        let (_, answer) = self
            .client
            .send(reqwest::Method::GET, &path, None, Duration::from_secs(300))
            .await
            .map_err(source_error)?;
        let blobs = answer["blobs"]
            .as_array()
            .ok_or_else(|| BackupError::Source("the blob listing has no blobs".to_owned()))?;
        blobs
            .iter()
            .map(|blob| {
                let digest = blob["digest"].as_str().unwrap_or_default().parse();
                match (digest, blob["size"].as_u64()) {
                    (Ok(digest), Some(size)) => Ok((digest, size)),
                    _ => Err(BackupError::Source(format!(
                        "a listed blob is malformed: {blob}"
                    ))),
                }
            })
            .collect()
    }

    async fn blob(&self, digest: &Digest) -> Result<BlobStream, BackupError> {
        self.client
            .stream(&format!("/api/v1/backups/{}/blobs/{digest}", self.id))
            .await
            .map_err(source_error)
    }

    async fn renew(&self, ttl: Duration) -> Result<(), BackupError> {
        let body = json!({ "lease_ttl": HumanDuration(ttl).to_string() });
        self.client
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/backups/{}", self.id),
                Some(body),
                ttl / 3,
            )
            .await
            .map(|_| ())
            .map_err(source_error)
    }
}

/// The bucket a backup goes to or comes from when `location` is `s3://bucket/prefix`,
/// reached with `storage.s3`'s connection settings (endpoint, region, path style, keys) and
/// that bucket and prefix; `None` for a folder. A prefix that overlaps the registry's own
/// blobs in the same bucket is refused: the two layouts would mix.
fn backup_bucket(
    location: &Path,
    config: &Config,
) -> anyhow::Result<Option<wharf_storage::S3Settings>> {
    let Some(rest) = location.to_str().and_then(|l| l.strip_prefix("s3://")) else {
        return Ok(None);
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_end_matches('/');
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !bucket_ok
        || (!prefix.is_empty()
            && prefix
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == ".."))
    {
        bail!(
            "{} is not a bucket's prefix: give s3://<bucket>/<prefix>, such as \
             s3://registry-backups/nightly",
            location.display()
        );
    }
    let mut settings = config.storage.s3.settings()?;
    if config.storage.backend == wharf_config::StorageBackend::S3 && settings.bucket == bucket {
        let own = settings.prefix.trim_matches('/');
        let overlaps = |a: &str, b: &str| {
            a.is_empty() || b.is_empty() || a == b || a.starts_with(&format!("{b}/"))
        };
        if overlaps(prefix, own) || overlaps(own, prefix) {
            bail!(
                "{} overlaps the registry's own blobs (s3://{bucket}/{own}); give a prefix of \
                 its own, beside them",
                location.display()
            );
        }
    }
    settings.bucket = bucket.to_owned();
    settings.prefix = prefix.to_owned();
    settings.redirect = None;
    Ok(Some(settings))
}

/// `wharf restore`: a backup into an empty data folder (and, with PostgreSQL metadata, an
/// empty database), then fsck.
pub async fn restore(
    from: &Path,
    data: &Path,
    config: &Config,
    json: bool,
) -> anyhow::Result<bool> {
    // With blobs in S3 they are written into the bucket (checked first, as `serve` does).
    let blobs = match config.storage.backend {
        wharf_config::StorageBackend::Filesystem => None,
        wharf_config::StorageBackend::S3 => {
            Some(wharf_storage::BlobStore::s3(&config.storage.s3.settings()?).await?)
        }
    };
    let target = wharf_backup::RestoreTarget {
        data: data.to_owned(),
        fsync: config.storage.fsync,
        blobs,
        metadata: config.metadata.database(),
    };
    let progress = ProgressReport::new("restored");
    let report = match backup_bucket(from, config)? {
        None => wharf_backup::restore(from, target, &progress).await?,
        Some(settings) => {
            let backup = wharf_storage::S3Folder::connect(&settings).await?;
            wharf_backup::restore_from_bucket(&backup, target, &progress).await?
        }
    };
    progress.done();
    let clean = report.fsck.is_clean();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "restored backup {} into {}: {} blobs ({})",
            report.id,
            data.display(),
            report.blobs,
            size(report.bytes)
        );
        let [holds, uploads, leases, deleting] = report.forgotten;
        println!(
            "  left behind: {holds} holds (it starts read-write), {uploads} upload sessions, {leases} backup leases, {deleting} blobs being deleted"
        );
        if clean {
            println!(
                "  fsck: no problems found ({} blobs, {} manifests checked)",
                report.fsck.blobs_checked, report.fsck.manifests_checked
            );
        } else {
            println!("  fsck found {} problems:", report.fsck.problems.len());
            for problem in &report.fsck.problems {
                println!("    {}", serde_json::to_string(problem).unwrap_or_default());
            }
        }
    }
    Ok(clean)
}
