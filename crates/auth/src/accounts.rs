//! Creating and changing accounts: the one place that checks names, hashes passwords, makes
//! robot tokens, decides who may change what, and passes each change through the write gate.
//! The admin API and the command line (on a stopped registry) both call it.
//!
//! Who may do what:
//! - registry administrators (superusers, admin robots): everything;
//! - an organization's administrators (a team with the `admin` role): its teams, members and
//!   robots (but not a robot's admin flag);
//! - a repository's administrators (the `admin` role on it, such as the namespace's owner):
//!   its grants and visibility;
//! - every user: their own password.

use serde::Serialize;

use super::Permissions;
use super::names::{check_account_name, check_visibility_pattern, robot_organization};
use super::secrets::{self, SecretError};
use wharf_core::role::Role;
use wharf_core::time::now_millis;
use wharf_gate::{WriteIntent, WritePermit, WriteRefused};
use wharf_metadata::MetadataError;
use wharf_metadata::accounts::{
    AccountChange, GrantRecord, RobotRecord, TeamRecord, UserRecord, VisibilityRule,
};
use wharf_registry::Registry;

/// The prefix of robot tokens, so a leaked one is recognisable (secret scanners).
pub const ROBOT_TOKEN_PREFIX: &str = "wharf_rt_";

/// Why an account change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The caller may not make it.
    #[error("{0}")]
    Denied(String),
    /// What it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken.
    #[error("{0}")]
    Conflict(String),
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The registry is read-only (or the change was cancelled).
    #[error(transparent)]
    Refused(#[from] WriteRefused),
    /// The database failed.
    #[error(transparent)]
    Store(MetadataError),
    /// Randomness or hashing failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl From<MetadataError> for AccountError {
    fn from(error: MetadataError) -> Self {
        match error {
            MetadataError::Refused(refused) => AccountError::Refused(refused),
            other => AccountError::Store(other),
        }
    }
}

type Result<T> = std::result::Result<T, AccountError>;

/// A user as listed (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The name.
    pub name: String,
    /// Whether a superuser.
    pub superuser: bool,
    /// When created (milliseconds since the epoch).
    pub created_at: i64,
}

/// A robot as listed (never with its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RobotInfo {
    /// `organization+name`.
    pub name: String,
    /// Whether it may use the admin API.
    pub admin: bool,
    /// What it is for.
    pub description: String,
    /// When created (milliseconds since the epoch).
    pub created_at: i64,
}

/// A team as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeamInfo {
    /// The team's name.
    pub name: String,
    /// Its role on the organization's repositories.
    pub role: Role,
    /// Its members.
    pub members: Vec<String>,
}

/// A grant as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantInfo {
    /// The repository.
    pub repository: String,
    /// The user or robot.
    pub principal: String,
    /// The role.
    pub role: Role,
}

/// A visibility rule as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VisibilityInfo {
    /// A repository, or `namespace/*`.
    pub pattern: String,
    /// Whether anyone may pull.
    pub public: bool,
}

/// Account management on behalf of one caller.
pub struct Accounts {
    registry: Registry,
    caller: Permissions,
}

fn user_info(user: UserRecord) -> UserInfo {
    UserInfo {
        name: user.name,
        superuser: user.superuser,
        created_at: user.created_at,
    }
}

fn robot_info(robot: RobotRecord) -> RobotInfo {
    RobotInfo {
        name: robot.name,
        admin: robot.admin,
        description: robot.description,
        created_at: robot.created_at,
    }
}

fn grant_info(grant: GrantRecord) -> GrantInfo {
    GrantInfo {
        repository: grant.repository,
        principal: grant.principal,
        role: grant.role,
    }
}

fn change(result: AccountChange, what: &str) -> Result<()> {
    match result {
        AccountChange::Done => Ok(()),
        AccountChange::Missing(kind) => {
            Err(AccountError::NotFound(format!("{what}: no such {kind}")))
        }
        AccountChange::Taken(kind) => Err(AccountError::Conflict(format!(
            "{what}: the name is taken by a {kind}"
        ))),
    }
}

fn found(exists: bool, what: String) -> Result<()> {
    if exists {
        Ok(())
    } else {
        Err(AccountError::NotFound(what))
    }
}

async fn hash(password: &str) -> Result<String> {
    secrets::check_password(password).map_err(AccountError::Invalid)?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| AccountError::Secret(SecretError::Hash(e.to_string())))?
        .map_err(AccountError::from)
}

impl Accounts {
    /// Account management on `registry` for `caller`.
    pub fn new(registry: Registry, caller: Permissions) -> Self {
        Accounts { registry, caller }
    }

    async fn permit(&self) -> Result<WritePermit> {
        Ok(self
            .registry
            .gate()
            .admit(WriteIntent::AccountChange)
            .await?)
    }

    fn store(&self) -> &dyn wharf_metadata::MetadataStore {
        self.registry.metadata().as_ref()
    }

    fn require_admin(&self) -> Result<()> {
        if self.caller.is_registry_admin() {
            Ok(())
        } else {
            Err(AccountError::Denied(
                "only a registry administrator may do this".to_owned(),
            ))
        }
    }

    fn require_organization_admin(&self, organization: &str) -> Result<()> {
        if self.caller.administers_organization(organization) {
            Ok(())
        } else {
            Err(AccountError::Denied(format!(
                "only an administrator of the organization {organization} may do this"
            )))
        }
    }

    fn require_repository_admin(&self, pattern: &str) -> Result<()> {
        if self.caller.is_registry_admin() || self.caller.role_on(pattern) == Some(Role::Admin) {
            Ok(())
        } else {
            Err(AccountError::Denied(format!(
                "only an administrator of {pattern} may do this"
            )))
        }
    }

    // ---- Users ----

    /// Every user.
    pub async fn users(&self) -> Result<Vec<UserInfo>> {
        self.require_admin()?;
        Ok(self
            .store()
            .users()
            .await?
            .into_iter()
            .map(user_info)
            .collect())
    }

    /// Creates a user.
    pub async fn add_user(&self, name: &str, password: &str, superuser: bool) -> Result<()> {
        self.require_admin()?;
        check_account_name(name, "user").map_err(AccountError::Invalid)?;
        let user = UserRecord {
            name: name.to_owned(),
            password_hash: hash(password).await?,
            superuser,
            created_at: now_millis(),
        };
        let permit = self.permit().await?;
        change(
            self.store().create_user(&permit, &user).await?,
            &format!("user {name}"),
        )
    }

    /// Changes a user's password: their own, or anyone's for an administrator.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        if !self.caller.is(name) {
            self.require_admin()?;
        }
        let hash = hash(password).await?;
        let permit = self.permit().await?;
        let exists = self
            .store()
            .update_user(&permit, name, Some(&hash), None)
            .await?;
        found(exists, format!("no user {name}"))
    }

    /// Makes a user a superuser, or not.
    pub async fn set_superuser(&self, name: &str, superuser: bool) -> Result<()> {
        self.require_admin()?;
        let permit = self.permit().await?;
        let exists = self
            .store()
            .update_user(&permit, name, None, Some(superuser))
            .await?;
        found(exists, format!("no user {name}"))
    }

    /// Deletes a user, their memberships and grants.
    pub async fn remove_user(&self, name: &str) -> Result<()> {
        self.require_admin()?;
        let permit = self.permit().await?;
        let existed = self.store().delete_user(&permit, name).await?;
        found(existed, format!("no user {name}"))
    }

    // ---- Organizations and teams ----

    /// Every organization.
    pub async fn organizations(&self) -> Result<Vec<String>> {
        self.require_admin()?;
        Ok(self.store().organizations().await?)
    }

    /// Creates an organization.
    pub async fn add_organization(&self, name: &str) -> Result<()> {
        self.require_admin()?;
        check_account_name(name, "organization").map_err(AccountError::Invalid)?;
        let permit = self.permit().await?;
        change(
            self.store().create_organization(&permit, name).await?,
            &format!("organization {name}"),
        )
    }

    /// Deletes an organization with its teams and robots.
    pub async fn remove_organization(&self, name: &str) -> Result<()> {
        self.require_admin()?;
        let permit = self.permit().await?;
        let existed = self.store().delete_organization(&permit, name).await?;
        found(existed, format!("no organization {name}"))
    }

    /// An organization's teams.
    pub async fn teams(&self, organization: &str) -> Result<Vec<TeamInfo>> {
        self.require_organization_admin(organization)?;
        Ok(self
            .store()
            .teams(organization)
            .await?
            .into_iter()
            .map(|team: TeamRecord| TeamInfo {
                name: team.name,
                role: team.role,
                members: team.members,
            })
            .collect())
    }

    /// Creates a team, or changes its role.
    pub async fn put_team(&self, organization: &str, team: &str, role: Role) -> Result<()> {
        self.require_organization_admin(organization)?;
        check_account_name(team, "team").map_err(AccountError::Invalid)?;
        let permit = self.permit().await?;
        change(
            self.store()
                .put_team(&permit, organization, team, role)
                .await?,
            &format!("team {organization}/{team}"),
        )
    }

    /// Deletes a team.
    pub async fn remove_team(&self, organization: &str, team: &str) -> Result<()> {
        self.require_organization_admin(organization)?;
        let permit = self.permit().await?;
        let existed = self
            .store()
            .delete_team(&permit, organization, team)
            .await?;
        found(existed, format!("no team {organization}/{team}"))
    }

    /// Adds a user or a robot of the organization to a team.
    pub async fn add_member(&self, organization: &str, team: &str, member: &str) -> Result<()> {
        self.require_organization_admin(organization)?;
        let permit = self.permit().await?;
        change(
            self.store()
                .add_team_member(&permit, organization, team, member)
                .await?,
            &format!("adding {member} to {organization}/{team}"),
        )
    }

    /// Removes a member from a team.
    pub async fn remove_member(&self, organization: &str, team: &str, member: &str) -> Result<()> {
        self.require_organization_admin(organization)?;
        let permit = self.permit().await?;
        let existed = self
            .store()
            .remove_team_member(&permit, organization, team, member)
            .await?;
        found(existed, format!("{member} is not in {organization}/{team}"))
    }

    // ---- Robots ----

    /// An organization's robots.
    pub async fn robots(&self, organization: &str) -> Result<Vec<RobotInfo>> {
        self.require_organization_admin(organization)?;
        Ok(self
            .store()
            .robots(Some(organization))
            .await?
            .into_iter()
            .map(robot_info)
            .collect())
    }

    /// Creates a robot; returns its token, which is shown this once.
    pub async fn add_robot(&self, name: &str, description: &str, admin: bool) -> Result<String> {
        let organization = robot_organization(name).map_err(AccountError::Invalid)?;
        self.require_organization_admin(organization)?;
        if admin {
            self.require_admin()?;
        }
        if description.len() > 1024 || description.contains(['\n', '\r']) {
            return Err(AccountError::Invalid(
                "a description is one line of at most 1024 bytes".to_owned(),
            ));
        }
        let token = secrets::random_secret(ROBOT_TOKEN_PREFIX)?;
        let robot = RobotRecord {
            name: name.to_owned(),
            organization: organization.to_owned(),
            token_hash: secrets::sha256_hex(&token),
            admin,
            description: description.to_owned(),
            created_at: now_millis(),
        };
        let permit = self.permit().await?;
        change(
            self.store().create_robot(&permit, &robot).await?,
            &format!("robot {name}"),
        )?;
        Ok(token)
    }

    /// Gives a robot a new token (the old one stops working); returns it.
    pub async fn renew_robot_token(&self, name: &str) -> Result<String> {
        let organization = robot_organization(name).map_err(AccountError::Invalid)?;
        self.require_organization_admin(organization)?;
        let token = secrets::random_secret(ROBOT_TOKEN_PREFIX)?;
        let permit = self.permit().await?;
        let exists = self
            .store()
            .update_robot(&permit, name, Some(&secrets::sha256_hex(&token)), None)
            .await?;
        found(exists, format!("no robot {name}"))?;
        Ok(token)
    }

    /// Lets a robot use the admin API, or not.
    pub async fn set_robot_admin(&self, name: &str, admin: bool) -> Result<()> {
        self.require_admin()?;
        let permit = self.permit().await?;
        let exists = self
            .store()
            .update_robot(&permit, name, None, Some(admin))
            .await?;
        found(exists, format!("no robot {name}"))
    }

    /// Deletes a robot (its token stops working).
    pub async fn remove_robot(&self, name: &str) -> Result<()> {
        let organization = robot_organization(name).map_err(AccountError::Invalid)?;
        self.require_organization_admin(organization)?;
        let permit = self.permit().await?;
        let existed = self.store().delete_robot(&permit, name).await?;
        found(existed, format!("no robot {name}"))
    }

    // ---- Grants and visibility ----

    /// The grants on a repository.
    pub async fn grants_on(&self, repository: &str) -> Result<Vec<GrantInfo>> {
        self.require_repository_admin(repository)?;
        Ok(self
            .store()
            .grants_on(repository)
            .await?
            .into_iter()
            .map(grant_info)
            .collect())
    }

    /// The grants of a user or robot (theirs, or anyone's for an administrator).
    pub async fn grants_of(&self, principal: &str) -> Result<Vec<GrantInfo>> {
        if !self.caller.is(principal) {
            self.require_admin()?;
        }
        Ok(self
            .store()
            .grants_of(principal)
            .await?
            .into_iter()
            .map(grant_info)
            .collect())
    }

    /// Gives a user or robot a role on a repository.
    pub async fn grant(&self, repository: &str, principal: &str, role: Role) -> Result<()> {
        repository
            .parse::<wharf_core::reference::RepositoryName>()
            .map_err(|e| AccountError::Invalid(e.to_string()))?;
        self.require_repository_admin(repository)?;
        let grant = GrantRecord {
            repository: repository.to_owned(),
            principal: principal.to_owned(),
            role,
        };
        let permit = self.permit().await?;
        change(
            self.store().put_grant(&permit, &grant).await?,
            &format!("granting {role} on {repository} to {principal}"),
        )
    }

    /// Takes a grant back.
    pub async fn revoke(&self, repository: &str, principal: &str) -> Result<()> {
        self.require_repository_admin(repository)?;
        let permit = self.permit().await?;
        let existed = self
            .store()
            .delete_grant(&permit, repository, principal)
            .await?;
        found(existed, format!("{principal} has no grant on {repository}"))
    }

    /// Every visibility rule.
    pub async fn visibility(&self) -> Result<Vec<VisibilityInfo>> {
        self.require_admin()?;
        Ok(self
            .store()
            .visibility_rules()
            .await?
            .into_iter()
            .map(|rule| VisibilityInfo {
                pattern: rule.pattern,
                public: rule.public,
            })
            .collect())
    }

    /// Makes a repository (or every repository of `namespace/*`) public or private.
    pub async fn set_visibility(&self, pattern: &str, public: bool) -> Result<()> {
        check_visibility_pattern(pattern).map_err(AccountError::Invalid)?;
        self.require_repository_admin(pattern)?;
        let permit = self.permit().await?;
        self.store()
            .put_visibility(
                &permit,
                &VisibilityRule {
                    pattern: pattern.to_owned(),
                    public,
                },
            )
            .await?;
        Ok(())
    }

    /// Removes a visibility rule (what it covered follows the next enclosing rule, or is private).
    pub async fn remove_visibility(&self, pattern: &str) -> Result<()> {
        self.require_repository_admin(pattern)?;
        let permit = self.permit().await?;
        let existed = self.store().delete_visibility(&permit, pattern).await?;
        found(existed, format!("no visibility rule {pattern}"))
    }
}
