//! `wharf user`, `wharf org`, `wharf robot` and `wharf repo`: accounts, teams, robots, grants and
//! visibility, through the admin API of the running server, or of the data folder when none runs
//! (see [`Target`]).

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use wharf_auth::secrets::random_secret;
use wharf_config::Config;
use wharf_core::role::Role;

use crate::target::Target;
pub use crate::target::Via;

/// How a new password is given.
#[derive(Args)]
pub struct PasswordInput {
    /// Read the password from the first line of standard input; without this, a random one is
    /// made and printed once.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// List the users.
    List,
    /// Create a user (the owner of the namespace of its name).
    Add {
        /// The user's name.
        name: String,
        /// Make the user a superuser (everything, the admin API included).
        #[arg(long)]
        superuser: bool,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// Delete a user, with their team memberships and grants.
    Remove {
        /// The user's name.
        name: String,
    },
    /// Change a user's password (every user may change their own).
    Passwd {
        /// The user's name.
        name: String,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// Make a user a superuser, or not.
    Superuser {
        /// The user's name.
        name: String,
        /// `true` or `false`.
        #[arg(action = clap::ArgAction::Set)]
        superuser: bool,
    },
    /// Give a user (or robot) a role on a repository: read, write, admin; `none` takes it back.
    Grant {
        /// The user or robot.
        name: String,
        /// The repository, such as acme/app.
        repository: String,
        /// read, write, admin or none.
        role: String,
    },
    /// List a user's (or robot's) grants.
    Grants {
        /// The user or robot.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum OrgCommand {
    /// List the organizations.
    List,
    /// Create an organization (the owner of the namespace of its name).
    Add {
        /// The organization's name.
        name: String,
    },
    /// Delete an organization with its teams and robots (its repositories stay).
    Remove {
        /// The organization's name.
        name: String,
    },
    /// List an organization's teams and their members.
    Teams {
        /// The organization.
        org: String,
    },
    /// Create a team, or change its role on the organization's repositories.
    Team {
        /// The organization.
        org: String,
        /// The team.
        team: String,
        /// read, write or admin (admin also manages the organization's teams and robots).
        role: Role,
    },
    /// Delete a team.
    RemoveTeam {
        /// The organization.
        org: String,
        /// The team.
        team: String,
    },
    /// Add a user, or a robot of the organization, to a team.
    AddMember {
        /// The organization.
        org: String,
        /// The team.
        team: String,
        /// The user or robot.
        member: String,
    },
    /// Remove a member from a team.
    RemoveMember {
        /// The organization.
        org: String,
        /// The team.
        team: String,
        /// The user or robot.
        member: String,
    },
}

#[derive(Subcommand)]
pub enum RobotCommand {
    /// List an organization's robots.
    List {
        /// The organization.
        org: String,
    },
    /// Create a robot (organization+name) and print its token, once.
    Add {
        /// organization+name, such as acme+ci.
        name: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Let it use the admin API (for an operator or a backup job).
        #[arg(long)]
        admin: bool,
    },
    /// Give a robot a new token (the old one stops working) and print it, once.
    Token {
        /// organization+name.
        name: String,
    },
    /// Let a robot use the admin API, or not.
    Admin {
        /// organization+name.
        name: String,
        /// `true` or `false`.
        #[arg(action = clap::ArgAction::Set)]
        admin: bool,
    },
    /// Delete a robot (its token stops working).
    Remove {
        /// organization+name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Make a repository (or every repository of namespace/*) public, private, or follow the
    /// enclosing rule again (`default`).
    Visibility {
        /// A repository, or namespace/* (quote it for the shell).
        pattern: String,
        /// public, private or default.
        visibility: String,
    },
    /// List the visibility rules.
    VisibilityRules,
    /// List the grants on a repository.
    Grants {
        /// The repository.
        repository: String,
    },
}

/// The account commands.
pub enum AccountCommand {
    /// `wharf user ...`
    User(UserCommand),
    /// `wharf org ...`
    Org(OrgCommand),
    /// `wharf robot ...`
    Robot(RobotCommand),
    /// `wharf repo ...`
    Repo(RepoCommand),
}

/// Runs an account command.
pub async fn run(command: AccountCommand, via: &Via, config: &Config) -> anyhow::Result<()> {
    let target = Target::open(config, via.url.as_deref()).await?;
    // Said on standard error: standard output carries what scripts read (a password, JSON).
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{}", target.describe());
    }
    let result = execute(command, &target, via.json).await;
    target.close().await;
    result
}

/// A path segment, percent-encoded (names are validated by the server; this keeps a stray
/// character from changing the path).
fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn new_password(input: &PasswordInput) -> anyhow::Result<(String, bool)> {
    if input.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        if password.is_empty() {
            bail!("no password on standard input");
        }
        Ok((password, false))
    } else {
        Ok((random_secret("")?, true))
    }
}

async fn execute(command: AccountCommand, target: &Target, json: bool) -> anyhow::Result<()> {
    let print = |answer: &Value, summary: String| {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(answer).unwrap_or_default()
            );
        } else if !summary.is_empty() {
            println!("{summary}");
        }
    };
    let names = |answer: &Value, key: &str, field: Option<&str>| -> String {
        answer[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| match field {
                        Some(field) => item[field].as_str().unwrap_or_default().to_owned(),
                        None => item.as_str().unwrap_or_default().to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    match command {
        AccountCommand::User(command) => match command {
            UserCommand::List => {
                let answer = target.call(Method::GET, "/api/v1/users", None).await?;
                let lines = answer["users"]
                    .as_array()
                    .map(|users| {
                        users
                            .iter()
                            .map(|u| {
                                let name = u["name"].as_str().unwrap_or_default();
                                if u["superuser"] == true {
                                    format!("{name} (superuser)")
                                } else {
                                    name.to_owned()
                                }
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                print(&answer, lines);
            }
            UserCommand::Add {
                name,
                superuser,
                password,
            } => {
                let (password, generated) = new_password(&password)?;
                let body = json!({ "name": name, "password": password, "superuser": superuser });
                let answer = target
                    .call(Method::POST, "/api/v1/users", Some(body))
                    .await?;
                print(&answer, format!("created user {name}"));
                if generated && !json {
                    println!("password: {password}");
                }
            }
            UserCommand::Remove { name } => {
                let path = format!("/api/v1/users/{}", segment(&name));
                let answer = target.call(Method::DELETE, &path, None).await?;
                print(&answer, format!("removed user {name}"));
            }
            UserCommand::Passwd { name, password } => {
                let (password, generated) = new_password(&password)?;
                let path = format!("/api/v1/users/{}/password", segment(&name));
                let body = json!({ "password": password });
                let answer = target.call(Method::PUT, &path, Some(body)).await?;
                print(&answer, format!("changed the password of {name}"));
                if generated && !json {
                    println!("password: {password}");
                }
            }
            UserCommand::Superuser { name, superuser } => {
                let path = format!("/api/v1/users/{}/superuser", segment(&name));
                let body = json!({ "superuser": superuser });
                let answer = target.call(Method::PUT, &path, Some(body)).await?;
                let what = if superuser { "is" } else { "is no longer" };
                print(&answer, format!("{name} {what} a superuser"));
            }
            UserCommand::Grant {
                name,
                repository,
                role,
            } => {
                let answer = if role == "none" {
                    let path = format!(
                        "/api/v1/grants?repository={}&principal={}",
                        segment(&repository),
                        segment(&name)
                    );
                    target.call(Method::DELETE, &path, None).await?
                } else {
                    let role: Role = role.parse().map_err(anyhow::Error::msg)?;
                    let body = json!({ "repository": repository, "principal": name, "role": role });
                    target
                        .call(Method::PUT, "/api/v1/grants", Some(body))
                        .await?
                };
                print(&answer, format!("{name}: {role} on {repository}"));
            }
            UserCommand::Grants { name } => {
                let path = format!("/api/v1/users/{}/grants", segment(&name));
                let answer = target.call(Method::GET, &path, None).await?;
                print(&answer, grant_lines(&answer));
            }
        },
        AccountCommand::Org(command) => match command {
            OrgCommand::List => {
                let answer = target
                    .call(Method::GET, "/api/v1/organizations", None)
                    .await?;
                print(&answer, names(&answer, "organizations", None));
            }
            OrgCommand::Add { name } => {
                let body = json!({ "name": name });
                let answer = target
                    .call(Method::POST, "/api/v1/organizations", Some(body))
                    .await?;
                print(&answer, format!("created organization {name}"));
            }
            OrgCommand::Remove { name } => {
                let path = format!("/api/v1/organizations/{}", segment(&name));
                let answer = target.call(Method::DELETE, &path, None).await?;
                print(&answer, format!("removed organization {name}"));
            }
            OrgCommand::Teams { org } => {
                let path = format!("/api/v1/organizations/{}/teams", segment(&org));
                let answer = target.call(Method::GET, &path, None).await?;
                let lines = answer["teams"]
                    .as_array()
                    .map(|teams| {
                        teams
                            .iter()
                            .map(|t| {
                                let members: Vec<&str> = t["members"]
                                    .as_array()
                                    .map(|m| m.iter().filter_map(Value::as_str).collect())
                                    .unwrap_or_default();
                                format!(
                                    "{} ({}): {}",
                                    t["name"].as_str().unwrap_or_default(),
                                    t["role"].as_str().unwrap_or_default(),
                                    members.join(", ")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                print(&answer, lines);
            }
            OrgCommand::Team { org, team, role } => {
                let path = format!(
                    "/api/v1/organizations/{}/teams/{}",
                    segment(&org),
                    segment(&team)
                );
                let answer = target
                    .call(Method::PUT, &path, Some(json!({ "role": role })))
                    .await?;
                print(&answer, format!("team {org}/{team}: {role}"));
            }
            OrgCommand::RemoveTeam { org, team } => {
                let path = format!(
                    "/api/v1/organizations/{}/teams/{}",
                    segment(&org),
                    segment(&team)
                );
                let answer = target.call(Method::DELETE, &path, None).await?;
                print(&answer, format!("removed team {org}/{team}"));
            }
            OrgCommand::AddMember { org, team, member } => {
                let path = format!(
                    "/api/v1/organizations/{}/teams/{}/members/{}",
                    segment(&org),
                    segment(&team),
                    segment(&member)
                );
                let answer = target.call(Method::PUT, &path, None).await?;
                print(&answer, format!("{member} is in {org}/{team}"));
            }
            OrgCommand::RemoveMember { org, team, member } => {
                let path = format!(
                    "/api/v1/organizations/{}/teams/{}/members/{}",
                    segment(&org),
                    segment(&team),
                    segment(&member)
                );
                let answer = target.call(Method::DELETE, &path, None).await?;
                print(&answer, format!("{member} is no longer in {org}/{team}"));
            }
        },
        AccountCommand::Robot(command) => match command {
            RobotCommand::List { org } => {
                let path = format!("/api/v1/organizations/{}/robots", segment(&org));
                let answer = target.call(Method::GET, &path, None).await?;
                print(&answer, names(&answer, "robots", Some("name")));
            }
            RobotCommand::Add {
                name,
                description,
                admin,
            } => {
                let body = json!({ "name": name, "description": description, "admin": admin });
                let answer = target
                    .call(Method::POST, "/api/v1/robots", Some(body))
                    .await?;
                let token = answer["token"].as_str().unwrap_or_default();
                print(
                    &answer,
                    format!(
                        "created robot {name}\ntoken: {token}\n(log in with the robot's name and this token; it is not shown again)"
                    ),
                );
            }
            RobotCommand::Token { name } => {
                let path = format!("/api/v1/robots/{}/token", segment(&name));
                let answer = target.call(Method::POST, &path, None).await?;
                let token = answer["token"].as_str().unwrap_or_default();
                print(
                    &answer,
                    format!("new token for {name} (the old one no longer works)\ntoken: {token}"),
                );
            }
            RobotCommand::Admin { name, admin } => {
                let path = format!("/api/v1/robots/{}/admin", segment(&name));
                let answer = target
                    .call(Method::PUT, &path, Some(json!({ "admin": admin })))
                    .await?;
                let what = if admin { "may" } else { "may not" };
                print(&answer, format!("{name} {what} use the admin API"));
            }
            RobotCommand::Remove { name } => {
                let path = format!("/api/v1/robots/{}", segment(&name));
                let answer = target.call(Method::DELETE, &path, None).await?;
                print(&answer, format!("removed robot {name}"));
            }
        },
        AccountCommand::Repo(command) => match command {
            RepoCommand::Visibility {
                pattern,
                visibility,
            } => {
                let answer = match visibility.as_str() {
                    "public" | "private" => {
                        let body = json!({ "pattern": pattern, "public": visibility == "public" });
                        target
                            .call(Method::PUT, "/api/v1/visibility", Some(body))
                            .await?
                    }
                    "default" => {
                        let path = format!("/api/v1/visibility?pattern={}", segment(&pattern));
                        target.call(Method::DELETE, &path, None).await?
                    }
                    other => bail!("unknown visibility {other:?}: use public, private or default"),
                };
                print(&answer, format!("{pattern}: {visibility}"));
            }
            RepoCommand::VisibilityRules => {
                let answer = target.call(Method::GET, "/api/v1/visibility", None).await?;
                let lines = answer["visibility"]
                    .as_array()
                    .map(|rules| {
                        rules
                            .iter()
                            .map(|r| {
                                let what = if r["public"] == true {
                                    "public"
                                } else {
                                    "private"
                                };
                                format!("{}: {what}", r["pattern"].as_str().unwrap_or_default())
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                print(&answer, lines);
            }
            RepoCommand::Grants { repository } => {
                let path = format!("/api/v1/grants?repository={}", segment(&repository));
                let answer = target.call(Method::GET, &path, None).await?;
                print(&answer, grant_lines(&answer));
            }
        },
    }
    Ok(())
}

fn grant_lines(answer: &Value) -> String {
    answer["grants"]
        .as_array()
        .map(|grants| {
            grants
                .iter()
                .map(|g| {
                    format!(
                        "{} {} {}",
                        g["principal"].as_str().unwrap_or_default(),
                        g["role"].as_str().unwrap_or_default(),
                        g["repository"].as_str().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}
