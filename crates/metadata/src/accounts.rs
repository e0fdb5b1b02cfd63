//! The accounts part of the metadata store: users, organizations and their teams, robot
//! accounts, grants on repositories and repository visibility.
//!
//! Reads take no permit (logins and token issuance only read, so they work while read-only).
//! Every change takes a `&WritePermit` like any other write, except the first superuser's
//! creation at start-up, which the control plane makes (see [`AccountStore::bootstrap_superuser`]).
//! Each change is one transaction that checks what it depends on (the organization of a team, the
//! account a grant names) itself, so concurrent changes cannot leave a dangling reference.

use async_trait::async_trait;

use super::{Millis, Result};
use wharf_core::role::Role;
use wharf_gate::{ControlWrite, WritePermit};

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user's name, also the namespace it owns.
    pub name: String,
    /// The password's argon2id hash (a PHC string).
    pub password_hash: String,
    /// Whether the user may do everything, the admin API included.
    pub superuser: bool,
    /// When the account was created.
    pub created_at: Millis,
}

/// A robot account of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotRecord {
    /// `organization+name`.
    pub name: String,
    /// The organization it belongs to.
    pub organization: String,
    /// The SHA-256 (hex) of its token.
    pub token_hash: String,
    /// Whether it may use the admin API.
    pub admin: bool,
    /// What it is for.
    pub description: String,
    /// When it was created.
    pub created_at: Millis,
}

/// A team of an organization, with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRecord {
    /// The organization.
    pub organization: String,
    /// The team's name within it.
    pub name: String,
    /// The role its members have on every repository of the organization.
    pub role: Role,
    /// Its members (users and robots), by name, sorted.
    pub members: Vec<String>,
}

/// A role on one repository given to a user or a robot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// The repository.
    pub repository: String,
    /// The user or robot.
    pub principal: String,
    /// The role.
    pub role: Role,
}

/// Whether repositories matching a pattern (a name, or `namespace/*`) are public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityRule {
    /// A repository name, or `namespace/*` for every repository under `namespace/`.
    pub pattern: String,
    /// Whether anyone, anonymous callers included, may pull.
    pub public: bool,
}

/// What a change that depends on other records did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountChange {
    /// It was made.
    Done,
    /// Something it names does not exist: the named kind of record.
    Missing(&'static str),
    /// It would create a record whose name is taken: by the named kind of record.
    Taken(&'static str),
}

/// The accounts store. See the [module documentation](self).
#[async_trait]
pub trait AccountStore: Send + Sync {
    // ---- Reads ----

    /// A user, by name.
    async fn user(&self, name: &str) -> Result<Option<UserRecord>>;

    /// Every user, by name.
    async fn users(&self) -> Result<Vec<UserRecord>>;

    /// Whether any superuser exists.
    async fn has_superuser(&self) -> Result<bool>;

    /// Every organization, by name.
    async fn organizations(&self) -> Result<Vec<String>>;

    /// The teams of an organization with their members, by name.
    async fn teams(&self, organization: &str) -> Result<Vec<TeamRecord>>;

    /// A robot, by name.
    async fn robot(&self, name: &str) -> Result<Option<RobotRecord>>;

    /// The robots of an organization, or every robot, by name.
    async fn robots(&self, organization: Option<&str>) -> Result<Vec<RobotRecord>>;

    /// The roles a user or robot has through teams: (organization, role) for each team.
    async fn team_roles(&self, member: &str) -> Result<Vec<(String, Role)>>;

    /// The grants of a user or robot.
    async fn grants_of(&self, principal: &str) -> Result<Vec<GrantRecord>>;

    /// The grants on a repository.
    async fn grants_on(&self, repository: &str) -> Result<Vec<GrantRecord>>;

    /// Every visibility rule.
    async fn visibility_rules(&self) -> Result<Vec<VisibilityRule>>;

    // ---- Changes ----

    /// Creates the first superuser, unless a superuser exists by then (another replica made
    /// one): a control-plane write, because without an administrator nobody could release a
    /// hold that keeps the registry read-only. Returns whether it was created.
    async fn bootstrap_superuser(&self, control: &ControlWrite, user: &UserRecord) -> Result<bool>;

    /// Creates a user; its name must be free of users and organizations.
    async fn create_user(&self, permit: &WritePermit, user: &UserRecord) -> Result<AccountChange>;

    /// Changes a user's password hash and/or superuser flag; returns whether the user exists.
    async fn update_user(
        &self,
        permit: &WritePermit,
        name: &str,
        password_hash: Option<&str>,
        superuser: Option<bool>,
    ) -> Result<bool>;

    /// Deletes a user with its team memberships and grants; returns whether it existed.
    async fn delete_user(&self, permit: &WritePermit, name: &str) -> Result<bool>;

    /// Creates an organization; its name must be free of users and organizations.
    async fn create_organization(&self, permit: &WritePermit, name: &str) -> Result<AccountChange>;

    /// Deletes an organization with its teams, robots, and the robots' grants and memberships;
    /// returns whether it existed.
    async fn delete_organization(&self, permit: &WritePermit, name: &str) -> Result<bool>;

    /// Creates a team or changes its role.
    async fn put_team(
        &self,
        permit: &WritePermit,
        organization: &str,
        team: &str,
        role: Role,
    ) -> Result<AccountChange>;

    /// Deletes a team; returns whether it existed.
    async fn delete_team(
        &self,
        permit: &WritePermit,
        organization: &str,
        team: &str,
    ) -> Result<bool>;

    /// Adds a user, or a robot of the organization, to a team.
    async fn add_team_member(
        &self,
        permit: &WritePermit,
        organization: &str,
        team: &str,
        member: &str,
    ) -> Result<AccountChange>;

    /// Removes a member from a team; returns whether it was one.
    async fn remove_team_member(
        &self,
        permit: &WritePermit,
        organization: &str,
        team: &str,
        member: &str,
    ) -> Result<bool>;

    /// Creates a robot in its organization.
    async fn create_robot(
        &self,
        permit: &WritePermit,
        robot: &RobotRecord,
    ) -> Result<AccountChange>;

    /// Changes a robot's token hash and/or admin flag; returns whether the robot exists.
    async fn update_robot(
        &self,
        permit: &WritePermit,
        name: &str,
        token_hash: Option<&str>,
        admin: Option<bool>,
    ) -> Result<bool>;

    /// Deletes a robot with its grants and memberships; returns whether it existed.
    async fn delete_robot(&self, permit: &WritePermit, name: &str) -> Result<bool>;

    /// Gives a user or robot a role on a repository (replacing the one it had).
    async fn put_grant(&self, permit: &WritePermit, grant: &GrantRecord) -> Result<AccountChange>;

    /// Removes a grant; returns whether it existed.
    async fn delete_grant(
        &self,
        permit: &WritePermit,
        repository: &str,
        principal: &str,
    ) -> Result<bool>;

    /// Sets a visibility rule.
    async fn put_visibility(&self, permit: &WritePermit, rule: &VisibilityRule) -> Result<()>;

    /// Removes a visibility rule; returns whether it existed.
    async fn delete_visibility(&self, permit: &WritePermit, pattern: &str) -> Result<bool>;
}
