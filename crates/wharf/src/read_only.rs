//! `wharf read-only on|off|status`: the admin API's holds and state, from the command line — of
//! the running server, or of the data folder when none runs (see [`Target`]).

use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};
use wharf_config::Config;
use wharf_config::HumanDuration;

use crate::target::{Target, Via};

/// The hold the command takes and releases unless told another.
const DEFAULT_HOLD: &str = "admin";

#[derive(Subcommand)]
pub enum ReadOnlyCommand {
    /// Take a hold: the registry drains (writes under way finish) and becomes read-only.
    On {
        /// Why, as shown to clients and in the audit trail.
        #[arg(long)]
        reason: String,
        /// The hold's name; each actor uses its own, so holds do not undo each other.
        #[arg(long, default_value = DEFAULT_HOLD)]
        hold: String,
        /// Release the hold by itself after this long (such as 30m or 2h).
        #[arg(long)]
        ttl: Option<HumanDuration>,
        /// Wait until read-only is in effect on every replica.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up waiting after this long (the hold stays).
        #[arg(long, default_value = "10m")]
        timeout: HumanDuration,
        #[command(flatten)]
        via: Via,
    },
    /// Release a hold: the registry is read-write again once no hold is left.
    Off {
        /// The hold's name.
        #[arg(long, default_value = DEFAULT_HOLD)]
        hold: String,
        #[command(flatten)]
        via: Via,
    },
    /// Show the registry's mode, holds, writes in flight and last transition.
    Status {
        #[command(flatten)]
        via: Via,
    },
}

/// Runs the command; returns whether it reached what it was asked for.
pub async fn run(command: ReadOnlyCommand, config: &Config) -> anyhow::Result<bool> {
    match command {
        ReadOnlyCommand::On {
            reason,
            hold,
            ttl,
            wait,
            timeout,
            via,
        } => {
            let client = Target::open(config, via.url.as_deref()).await?;
            if wait && client.is_local() {
                client.close().await;
                anyhow::bail!(
                    "no server runs on the data folder: nothing writes to it, so there is nothing to \
                     wait for; take the hold without --wait (it applies when a server starts)"
                );
            }
            let mut path = format!("/api/v1/state/holds/{hold}");
            if wait {
                path.push_str(&format!("?wait={timeout}"));
            }
            let body = json!({ "reason": reason, "ttl": ttl.map(|t| t.to_string()) });
            let timeout = if wait {
                timeout.0 + Duration::from_secs(30)
            } else {
                Duration::from_secs(30)
            };
            let sent = client
                .send(reqwest::Method::PUT, &path, Some(body), timeout)
                .await;
            let registry = client.describe();
            client.close().await;
            let (status, answer) = sent?;
            if via.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                let created = answer["created"].as_bool().unwrap_or(false);
                println!(
                    "hold {hold:?} {}: {reason}",
                    if created { "taken" } else { "renewed" }
                );
                print_state(&registry, &answer["state"]);
                if wait && status == reqwest::StatusCode::ACCEPTED {
                    println!(
                        "read-only is not in effect yet after {timeout:?}; the drain goes on and the hold stays"
                    );
                }
            }
            Ok(!wait || status == reqwest::StatusCode::OK)
        }
        ReadOnlyCommand::Off { hold, via } => {
            let client = Target::open(config, via.url.as_deref()).await?;
            let path = format!("/api/v1/state/holds/{hold}");
            let sent = client.call(reqwest::Method::DELETE, &path, None).await;
            let registry = client.describe();
            client.close().await;
            let answer = sent?;
            if via.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("hold {hold:?} released");
                print_state(&registry, &answer["state"]);
            }
            Ok(true)
        }
        ReadOnlyCommand::Status { via } => {
            let client = Target::open(config, via.url.as_deref()).await?;
            let sent = client
                .call(reqwest::Method::GET, "/api/v1/state", None)
                .await;
            let registry = client.describe();
            client.close().await;
            let answer = sent?;
            if via.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print_state(&registry, &answer);
            }
            Ok(true)
        }
    }
}

/// Prints a state report of `registry` (which one, in words) for people.
fn print_state(registry: &str, state: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    println!("{registry}");
    println!(
        "registry: {} since {} (desired {}; read-only on {} replicas)",
        text(&state["effective"]),
        text(&state["since"]),
        text(&state["desired"]),
        text(&state["replicas_read_only"]),
    );
    let holds = state["holds"].as_array().cloned().unwrap_or_default();
    if holds.is_empty() {
        println!("holds: none");
    } else {
        println!("holds:");
        for hold in holds {
            let expires = hold["expires_at"]
                .as_str()
                .map(|e| format!(", expires {e}"))
                .unwrap_or_default();
            println!(
                "  {}: {} (by {} via {}, since {}{expires})",
                text(&hold["name"]),
                text(&hold["reason"]),
                text(&hold["set_by"]),
                text(&hold["source"]),
                text(&hold["created_at"]),
            );
        }
    }
    println!(
        "writes in flight: {}, uploads open: {}",
        state["writes_in_flight"], state["uploads_open"]
    );
    if let Some(progress) = state["progress"].as_str() {
        println!("draining: {progress}");
    }
    if let Some(drain) = state["drain"].as_object() {
        println!(
            "draining since {} (timeout {}, deadline {})",
            text(&drain["started_at"]),
            text(&drain["timeout"]),
            text(&drain["deadline"])
        );
    }
    let last = &state["last_transition"];
    if last.is_object() {
        let drain = last["drain_ms"]
            .as_u64()
            .map(|ms| {
                format!(
                    "; drain took {}: {} pushes completed, {} pushes cut off, {} writes \
                     cancelled, {} uploads cancelled",
                    humantime::format_duration(Duration::from_millis(ms)),
                    last["pushes_completed"],
                    last["pushes_cut_off"],
                    last["cancelled_writes"],
                    last["abandoned_uploads"]
                )
            })
            .unwrap_or_default();
        println!(
            "last transition: {} -> {} at {} ({}){drain}",
            text(&last["from"]),
            text(&last["to"]),
            text(&last["at"]),
            text(&last["reason"]),
        );
    }
}
