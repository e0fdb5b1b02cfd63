//! [`AccountStore`] on SQLite.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::{SqliteStore, commit, parse};
use wharf_core::role::Role;
use wharf_core::time::now_millis;
use wharf_gate::{ControlWrite, WritePermit};
use wharf_metadata::accounts::{
    AccountChange, AccountStore, GrantRecord, RobotRecord, TeamRecord, UserRecord, VisibilityRule,
};
use wharf_metadata::{MetadataError, Result};

#[derive(sqlx::FromRow)]
struct UserRow {
    name: String,
    password_hash: String,
    superuser: bool,
    created_at: i64,
}

impl From<UserRow> for UserRecord {
    fn from(row: UserRow) -> Self {
        UserRecord {
            name: row.name,
            password_hash: row.password_hash,
            superuser: row.superuser,
            created_at: row.created_at,
        }
    }
}

const USER_COLUMNS: &str = "name, password_hash, superuser, created_at";

#[derive(sqlx::FromRow)]
struct RobotRow {
    name: String,
    organization: String,
    token_hash: String,
    admin: bool,
    description: String,
    created_at: i64,
}

impl From<RobotRow> for RobotRecord {
    fn from(row: RobotRow) -> Self {
        RobotRecord {
            name: row.name,
            organization: row.organization,
            token_hash: row.token_hash,
            admin: row.admin,
            description: row.description,
            created_at: row.created_at,
        }
    }
}

const ROBOT_COLUMNS: &str = "name, organization, token_hash, admin, description, created_at";

#[derive(sqlx::FromRow)]
struct GrantRow {
    repository: String,
    principal: String,
    role: String,
}

impl TryFrom<GrantRow> for GrantRecord {
    type Error = MetadataError;
    fn try_from(row: GrantRow) -> Result<Self> {
        Ok(GrantRecord {
            role: parse(&row.role, "role")?,
            repository: row.repository,
            principal: row.principal,
        })
    }
}

/// Whether `name` is taken by a user or an organization: the kind that has it.
async fn namespace_owner(
    tx: &mut Transaction<'static, Sqlite>,
    name: &str,
) -> Result<Option<&'static str>> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT 'user' FROM users WHERE name = $1
         UNION ALL SELECT 'organization' FROM organizations WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(owner.map(|kind| {
        if kind == "user" {
            "user"
        } else {
            "organization"
        }
    }))
}

/// Whether `principal` is a user or a robot.
async fn principal_exists(tx: &mut Transaction<'static, Sqlite>, principal: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM users WHERE name = $1 UNION ALL SELECT 1 FROM robots WHERE name = $1",
    )
    .bind(principal)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

/// Removes what names `principal`: its team memberships and grants.
async fn forget_principal(tx: &mut Transaction<'static, Sqlite>, principal: &str) -> Result<()> {
    sqlx::query("DELETE FROM team_members WHERE member = $1")
        .bind(principal)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM repository_grants WHERE principal = $1")
        .bind(principal)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl SqliteStore {
    /// Deletes a user or robot (`table`) with what names it; returns whether it existed.
    async fn delete_principal(
        &self,
        permit: &WritePermit,
        table: &'static str,
        name: &str,
    ) -> Result<bool> {
        let mut tx = self.write(permit).await?;
        let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE name = $1"
        )))
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        forget_principal(&mut tx, name).await?;
        commit(tx, permit).await?;
        Ok(deleted == 1)
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(UserRecord::from))
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY name"
        )))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(UserRecord::from).collect())
    }

    async fn has_superuser(&self) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE superuser LIMIT 1")
            .fetch_optional(&self.reader)
            .await?;
        Ok(found.is_some())
    }

    async fn organizations(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM organizations ORDER BY name")
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn teams(&self, organization: &str) -> Result<Vec<TeamRecord>> {
        let teams: Vec<(String, String)> =
            sqlx::query_as("SELECT name, role FROM teams WHERE organization = $1 ORDER BY name")
                .bind(organization)
                .fetch_all(&self.reader)
                .await?;
        let members: Vec<(String, String)> = sqlx::query_as(
            "SELECT team, member FROM team_members WHERE organization = $1 ORDER BY team, member",
        )
        .bind(organization)
        .fetch_all(&self.reader)
        .await?;
        teams
            .into_iter()
            .map(|(name, role)| {
                Ok(TeamRecord {
                    organization: organization.to_owned(),
                    role: parse(&role, "role")?,
                    members: members
                        .iter()
                        .filter(|(team, _)| *team == name)
                        .map(|(_, member)| member.clone())
                        .collect(),
                    name,
                })
            })
            .collect()
    }

    async fn robot(&self, name: &str) -> Result<Option<RobotRecord>> {
        let row: Option<RobotRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ROBOT_COLUMNS} FROM robots WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(RobotRecord::from))
    }

    async fn robots(&self, organization: Option<&str>) -> Result<Vec<RobotRecord>> {
        let rows: Vec<RobotRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ROBOT_COLUMNS} FROM robots WHERE $1 IS NULL OR organization = $1 ORDER BY name"
        )))
        .bind(organization)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(RobotRecord::from).collect())
    }

    async fn team_roles(&self, member: &str) -> Result<Vec<(String, Role)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT t.organization, t.role
             FROM team_members m
             JOIN teams t ON t.organization = m.organization AND t.name = m.team
             WHERE m.member = $1",
        )
        .bind(member)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(organization, role)| Ok((organization, parse(&role, "role")?)))
            .collect()
    }

    async fn grants_of(&self, principal: &str) -> Result<Vec<GrantRecord>> {
        let rows: Vec<GrantRow> = sqlx::query_as(
            "SELECT repository, principal, role FROM repository_grants
             WHERE principal = $1 ORDER BY repository",
        )
        .bind(principal)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(GrantRecord::try_from).collect()
    }

    async fn grants_on(&self, repository: &str) -> Result<Vec<GrantRecord>> {
        let rows: Vec<GrantRow> = sqlx::query_as(
            "SELECT repository, principal, role FROM repository_grants
             WHERE repository = $1 ORDER BY principal",
        )
        .bind(repository)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(GrantRecord::try_from).collect()
    }

    async fn visibility_rules(&self) -> Result<Vec<VisibilityRule>> {
        let rows: Vec<(String, bool)> =
            sqlx::query_as("SELECT pattern, public FROM visibility ORDER BY pattern")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(pattern, public)| VisibilityRule { pattern, public })
            .collect())
    }

    async fn bootstrap_superuser(&self, control: &ControlWrite, user: &UserRecord) -> Result<bool> {
        let mut tx = self.control_write(control).await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE superuser LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() || namespace_owner(&mut tx, &user.name).await?.is_some() {
            return Ok(false);
        }
        insert_user(&mut tx, user).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_user(&self, permit: &WritePermit, user: &UserRecord) -> Result<AccountChange> {
        let mut tx = self.write(permit).await?;
        if let Some(owner) = namespace_owner(&mut tx, &user.name).await? {
            return Ok(AccountChange::Taken(owner));
        }
        insert_user(&mut tx, user).await?;
        commit(tx, permit).await?;
        Ok(AccountChange::Done)
    }

    async fn update_user(
        &self,
        permit: &WritePermit,
        name: &str,
        password_hash: Option<&str>,
        superuser: Option<bool>,
    ) -> Result<bool> {
        let mut tx = self.write(permit).await?;
        let updated = sqlx::query(
            "UPDATE users SET password_hash = COALESCE($2, password_hash),
                              superuser = COALESCE($3, superuser), updated_at = $4
             WHERE name = $1",
        )
        .bind(name)
        .bind(password_hash)
        .bind(superuser)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        commit(tx, permit).await?;
        Ok(updated == 1)
    }

    async fn delete_user(&self, permit: &WritePermit, name: &str) -> Result<bool> {
        self.delete_principal(permit, "users", name).await
    }

    async fn create_organization(&self, permit: &WritePermit, name: &str) -> Result<AccountChange> {
        let mut tx = self.write(permit).await?;
        if let Some(owner) = namespace_owner(&mut tx, name).await? {
            return Ok(AccountChange::Taken(owner));
        }
        sqlx::query("INSERT INTO organizations (name, created_at) VALUES ($1, $2)")
            .bind(name)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        commit(tx, permit).await?;
        Ok(AccountChange::Done)
    }

    async fn delete_organization(&self, permit: &WritePermit, name: &str) -> Result<bool> {
        let mut tx = self.write(permit).await?;
        let robots: Vec<String> =
            sqlx::query_scalar("SELECT name FROM robots WHERE organization = $1")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
        for robot in &robots {
            forget_principal(&mut tx, robot).await?;
        }
        // Teams, their members and the robots go with the organization (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM organizations WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit(tx, permit).await?;
        Ok(deleted == 1)
    }

    async fn put_team(
        &self,
        permit: &WritePermit,
        organization: &str,
        team: &str,
        role: Role,
    ) -> Result<AccountChange> {
        let mut tx = self.write(permit).await?;
        let organization_exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM organizations WHERE name = $1")
                .bind(organization)
                .fetch_optional(&mut *tx)
                .await?;
        if organization_exists.is_none() {
            return Ok(AccountChange::Missing("organization"));
        }
        sqlx::query(
            "INSERT INTO teams (organization, name, role) VALUES ($1, $2, $3)
             ON CONFLICT (organization, name) DO UPDATE SET role = excluded.role",
        )
        .bind(organization)
        .bind(team)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
        commit(tx, permit).await?;
        Ok(AccountChange::Done)
    }

    async fn delete_team(
        &self,
        permit: &WritePermit,
        organization: &str,
        team: &str,
    ) -> Result<bool> {
        let deleted = self
            .execute(
                permit,
                sqlx::query("DELETE FROM teams WHERE organization = $1 AND name = $2")
                    .bind(organization)
                    .bind(team),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn add_team_member(
        &self,
        permit: &WritePermit,
        organization: &str,
        team: &str,
        member: &str,
    ) -> Result<AccountChange> {
        let mut tx = self.write(permit).await?;
        let team_exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM teams WHERE organization = $1 AND name = $2")
                .bind(organization)
                .bind(team)
                .fetch_optional(&mut *tx)
                .await?;
        if team_exists.is_none() {
            return Ok(AccountChange::Missing("team"));
        }
        // A robot joins only its own organization's teams.
        let member_exists: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM users WHERE name = $1
             UNION ALL SELECT 1 FROM robots WHERE name = $1 AND organization = $2",
        )
        .bind(member)
        .bind(organization)
        .fetch_optional(&mut *tx)
        .await?;
        if member_exists.is_none() {
            return Ok(AccountChange::Missing("user or robot of the organization"));
        }
        sqlx::query(
            "INSERT INTO team_members (organization, team, member) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(organization)
        .bind(team)
        .bind(member)
        .execute(&mut *tx)
        .await?;
        commit(tx, permit).await?;
        Ok(AccountChange::Done)
    }

    async fn remove_team_member(
        &self,
        permit: &WritePermit,
        organization: &str,
        team: &str,
        member: &str,
    ) -> Result<bool> {
        let deleted = self
            .execute(
                permit,
                sqlx::query(
                    "DELETE FROM team_members WHERE organization = $1 AND team = $2 AND member = $3",
                )
                .bind(organization)
                .bind(team)
                .bind(member),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn create_robot(
        &self,
        permit: &WritePermit,
        robot: &RobotRecord,
    ) -> Result<AccountChange> {
        let mut tx = self.write(permit).await?;
        let organization_exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM organizations WHERE name = $1")
                .bind(&robot.organization)
                .fetch_optional(&mut *tx)
                .await?;
        if organization_exists.is_none() {
            return Ok(AccountChange::Missing("organization"));
        }
        let inserted = sqlx::query(
            "INSERT INTO robots (name, organization, token_hash, admin, description, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&robot.name)
        .bind(&robot.organization)
        .bind(&robot.token_hash)
        .bind(robot.admin)
        .bind(&robot.description)
        .bind(robot.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(AccountChange::Taken("robot"));
        }
        commit(tx, permit).await?;
        Ok(AccountChange::Done)
    }

    async fn update_robot(
        &self,
        permit: &WritePermit,
        name: &str,
        token_hash: Option<&str>,
        admin: Option<bool>,
    ) -> Result<bool> {
        let updated = self
            .execute(
                permit,
                sqlx::query(
                    "UPDATE robots SET token_hash = COALESCE($2, token_hash),
                                       admin = COALESCE($3, admin), updated_at = $4
                     WHERE name = $1",
                )
                .bind(name)
                .bind(token_hash)
                .bind(admin)
                .bind(now_millis()),
            )
            .await?;
        Ok(updated == 1)
    }

    async fn delete_robot(&self, permit: &WritePermit, name: &str) -> Result<bool> {
        self.delete_principal(permit, "robots", name).await
    }

    async fn put_grant(&self, permit: &WritePermit, grant: &GrantRecord) -> Result<AccountChange> {
        let mut tx = self.write(permit).await?;
        if !principal_exists(&mut tx, &grant.principal).await? {
            return Ok(AccountChange::Missing("user or robot"));
        }
        sqlx::query(
            "INSERT INTO repository_grants (repository, principal, role) VALUES ($1, $2, $3)
             ON CONFLICT (repository, principal) DO UPDATE SET role = excluded.role",
        )
        .bind(&grant.repository)
        .bind(&grant.principal)
        .bind(grant.role.as_str())
        .execute(&mut *tx)
        .await?;
        commit(tx, permit).await?;
        Ok(AccountChange::Done)
    }

    async fn delete_grant(
        &self,
        permit: &WritePermit,
        repository: &str,
        principal: &str,
    ) -> Result<bool> {
        let deleted = self
            .execute(
                permit,
                sqlx::query(
                    "DELETE FROM repository_grants WHERE repository = $1 AND principal = $2",
                )
                .bind(repository)
                .bind(principal),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn put_visibility(&self, permit: &WritePermit, rule: &VisibilityRule) -> Result<()> {
        self.execute(
            permit,
            sqlx::query(
                "INSERT INTO visibility (pattern, public) VALUES ($1, $2)
                 ON CONFLICT (pattern) DO UPDATE SET public = excluded.public",
            )
            .bind(&rule.pattern)
            .bind(rule.public),
        )
        .await?;
        Ok(())
    }

    async fn delete_visibility(&self, permit: &WritePermit, pattern: &str) -> Result<bool> {
        let deleted = self
            .execute(
                permit,
                sqlx::query("DELETE FROM visibility WHERE pattern = $1").bind(pattern),
            )
            .await?;
        Ok(deleted == 1)
    }
}

async fn insert_user(tx: &mut Transaction<'static, Sqlite>, user: &UserRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (name, password_hash, superuser, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&user.name)
    .bind(&user.password_hash)
    .bind(user.superuser)
    .bind(user.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
