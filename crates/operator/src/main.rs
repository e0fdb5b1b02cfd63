//! `wharf-operator`: `run` runs the controller, `crd` prints the CustomResourceDefinition.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::CustomResourceExt;
use kube::api::Api;

use wharf_operator::crd::WharfRegistry;
use wharf_operator::leader::LeaderElection;
use wharf_operator::reconcile::{self, Context};

/// Wharf's Kubernetes operator.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (in a cluster, or outside one with KUBECONFIG).
    Run {
        /// Watch the resources of this namespace only (default: every namespace).
        #[arg(long)]
        namespace: Option<String>,
        /// Reach the registry of a resource at this address instead of its Service:
        /// NAMESPACE/NAME=URL, repeatable. For running outside the cluster, where Services
        /// cannot be reached (development, tests).
        #[arg(long = "registry-url", value_name = "NAMESPACE/NAME=URL")]
        registry_urls: Vec<String>,
        /// A PEM CA certificate to trust for registries served over HTTPS.
        #[arg(long, value_name = "FILE")]
        registry_ca: Option<PathBuf>,
        /// The namespace of the Lease that elects the one replica that reconciles (in a
        /// cluster: the operator's own, from the Downward API).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// The Lease's name.
        #[arg(long, default_value = "wharf-operator")]
        lease_name: String,
        /// How long a Lease lasts without renewal before another replica takes over.
        #[arg(long, default_value_t = 15, value_name = "SECONDS")]
        lease_duration: u64,
        /// This replica's name in the Lease (in a cluster: the pod's name).
        #[arg(long, env = "HOSTNAME")]
        identity: Option<String>,
    },
    /// Print the CustomResourceDefinition (YAML) to apply with kubectl.
    Crd,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("wharf-operator: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crd => {
            let yaml = serde_saphyr::to_string(&WharfRegistry::crd())
                .context("printing the CustomResourceDefinition")?;
            let mut out = std::io::stdout().lock();
            out.write_all(b"---\n")?;
            out.write_all(yaml.as_bytes())?;
            out.flush()?;
            Ok(())
        }
        Command::Run {
            namespace,
            registry_urls,
            registry_ca,
            lease_namespace,
            lease_name,
            lease_duration,
            identity,
        } => {
            if lease_duration < 3 {
                bail!("--lease-duration must be at least 3 seconds (it is renewed every third)");
            }
            let identity =
                identity.unwrap_or_else(|| format!("wharf-operator-{}", std::process::id()));
            init_logging();
            let registry_urls = parse_registry_urls(&registry_urls)?;
            let mut http = reqwest::Client::builder();
            if let Some(ca) = registry_ca {
                let pem = std::fs::read(&ca)
                    .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
                let cert = reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
                http = http.add_root_certificate(cert);
            }
            let http = http.build().context("cannot build the HTTP client")?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(async move {
                    let client = kube::Client::try_default().await.context(
                        "cannot connect to Kubernetes (in-cluster configuration or KUBECONFIG)",
                    )?;
                    // One signal stops both the wait for the Lease and the controller.
                    let (stop, mut stopped) = tokio::sync::watch::channel(false);
                    tokio::spawn(async move {
                        shutdown_signal().await;
                        let _ = stop.send(true);
                    });
                    let election = LeaderElection::new(
                        Api::<Lease>::namespaced(client.clone(), &lease_namespace),
                        &lease_name,
                        &identity,
                        Duration::from_secs(lease_duration),
                    );
                    tokio::select! {
                        acquired = election.acquire() => acquired?,
                        _ = stopped.changed() => return anyhow::Ok(()),
                    }
                    let context = Context::new(client, http, registry_urls)
                        .await
                        .context("cannot read the cluster's API groups")?;
                    tracing::info!(namespace = namespace.as_deref().unwrap_or("*"), %identity, "wharf-operator running");
                    let controller = reconcile::run(Arc::new(context), namespace.as_deref(), async move {
                        let _ = stopped.changed().await;
                    });
                    tokio::select! {
                        () = controller => {
                            election.release().await;
                            anyhow::Ok(())
                        }
                        lost = election.keep() => Err(lost.into()),
                    }
                })
        }
    }
}

/// `NAMESPACE/NAME=URL` pairs.
fn parse_registry_urls(given: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut urls = BTreeMap::new();
    for pair in given {
        let Some((key, url)) = pair.split_once('=') else {
            bail!("--registry-url {pair:?}: expected NAMESPACE/NAME=URL");
        };
        if key.split('/').count() != 2 || key.split('/').any(str::is_empty) {
            bail!("--registry-url {pair:?}: {key:?} is not NAMESPACE/NAME");
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--registry-url {pair:?}: {url:?} is not an http(s) URL");
        }
        urls.insert(key.to_owned(), url.to_owned());
    }
    Ok(urls)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::parse_registry_urls;

    #[test]
    fn registry_urls_are_namespace_slash_name_equals_url() {
        let urls = parse_registry_urls(&["ns/reg=http://127.0.0.1:5000".to_owned()]).unwrap();
        assert_eq!(urls["ns/reg"], "http://127.0.0.1:5000");
        for bad in ["reg=http://x", "ns/reg", "ns/reg=ftp://x", "/reg=http://x"] {
            let error = parse_registry_urls(&[bad.to_owned()]).unwrap_err();
            assert!(
                error.to_string().contains("--registry-url"),
                "{bad}: {error}"
            );
        }
    }
}
