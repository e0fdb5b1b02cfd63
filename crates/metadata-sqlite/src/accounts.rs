//! [`AccountStore`] on SQLite.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::{SqliteStore, commit};
use wharf_core::role::Role;
use wharf_core::time::now_millis;
use wharf_gate::{ControlWrite, WritePermit};
use wharf_metadata::accounts::{
    AccountChange, AccountStore, GrantRecord, RobotRecord, TeamRecord, UserRecord, VisibilityRule,
};
use wharf_metadata::rows::{GrantRow, RobotRow, UserRow, parse};
use wharf_metadata::{Result, sql};

/// Whether `name` is taken by a user or an organization: the kind that has it.
async fn namespace_owner(
    tx: &mut Transaction<'static, Sqlite>,
    name: &str,
) -> Result<Option<&'static str>> {
    let owner: Option<String> = sqlx::query_scalar(sql::accounts::NAMESPACE_OWNER)
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
    let found: Option<i32> = sqlx::query_scalar(sql::accounts::PRINCIPAL_EXISTS)
        .bind(principal)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

/// Removes what names `principal`: its team memberships and grants.
async fn forget_principal(tx: &mut Transaction<'static, Sqlite>, principal: &str) -> Result<()> {
    sqlx::query(sql::accounts::FORGET_MEMBERSHIPS)
        .bind(principal)
        .execute(&mut **tx)
        .await?;
    sqlx::query(sql::accounts::FORGET_GRANTS)
        .bind(principal)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl SqliteStore {
    /// Deletes a user or robot (the statement `delete`) with what names it; returns whether it existed.
    async fn delete_principal(
        &self,
        permit: &WritePermit,
        delete: &'static str,
        name: &str,
    ) -> Result<bool> {
        let mut tx = self.write(permit).await?;
        let deleted = sqlx::query(delete)
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
        let row: Option<UserRow> = sqlx::query_as(sql::accounts::USER)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(UserRecord::from))
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> = sqlx::query_as(sql::accounts::USERS)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.into_iter().map(UserRecord::from).collect())
    }

    async fn has_superuser(&self) -> Result<bool> {
        let found: Option<i32> = sqlx::query_scalar(sql::accounts::ANY_SUPERUSER)
            .fetch_optional(&self.reader)
            .await?;
        Ok(found.is_some())
    }

    async fn organizations(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(sql::accounts::ORGANIZATIONS)
            .fetch_all(&self.reader)
            .await?)
    }

    async fn teams(&self, organization: &str) -> Result<Vec<TeamRecord>> {
        let teams: Vec<(String, String)> = sqlx::query_as(sql::accounts::TEAMS)
            .bind(organization)
            .fetch_all(&self.reader)
            .await?;
        let members: Vec<(String, String)> = sqlx::query_as(sql::accounts::TEAM_MEMBERS)
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
        let row: Option<RobotRow> = sqlx::query_as(sql::accounts::ROBOT)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(RobotRecord::from))
    }

    async fn robots(&self, organization: Option<&str>) -> Result<Vec<RobotRecord>> {
        let rows: Vec<RobotRow> = sqlx::query_as(sql::accounts::ROBOTS)
            .bind(organization)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.into_iter().map(RobotRecord::from).collect())
    }

    async fn team_roles(&self, member: &str) -> Result<Vec<(String, Role)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(sql::accounts::TEAM_ROLES)
            .bind(member)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter()
            .map(|(organization, role)| Ok((organization, parse(&role, "role")?)))
            .collect()
    }

    async fn grants_of(&self, principal: &str) -> Result<Vec<GrantRecord>> {
        let rows: Vec<GrantRow> = sqlx::query_as(sql::accounts::GRANTS_OF)
            .bind(principal)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(GrantRecord::try_from).collect()
    }

    async fn grants_on(&self, repository: &str) -> Result<Vec<GrantRecord>> {
        let rows: Vec<GrantRow> = sqlx::query_as(sql::accounts::GRANTS_ON)
            .bind(repository)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(GrantRecord::try_from).collect()
    }

    async fn visibility_rules(&self) -> Result<Vec<VisibilityRule>> {
        let rows: Vec<(String, bool)> = sqlx::query_as(sql::accounts::VISIBILITY_RULES)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(pattern, public)| VisibilityRule { pattern, public })
            .collect())
    }

    async fn bootstrap_superuser(&self, control: &ControlWrite, user: &UserRecord) -> Result<bool> {
        let mut tx = self.control_write(control).await?;
        let exists: Option<i32> = sqlx::query_scalar(sql::accounts::ANY_SUPERUSER)
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
        let updated = sqlx::query(sql::accounts::UPDATE_USER)
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
        self.delete_principal(permit, sql::accounts::DELETE_USER, name)
            .await
    }

    async fn create_organization(&self, permit: &WritePermit, name: &str) -> Result<AccountChange> {
        let mut tx = self.write(permit).await?;
        if let Some(owner) = namespace_owner(&mut tx, name).await? {
            return Ok(AccountChange::Taken(owner));
        }
        sqlx::query(sql::accounts::INSERT_ORGANIZATION)
            .bind(name)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        commit(tx, permit).await?;
        Ok(AccountChange::Done)
    }

    async fn delete_organization(&self, permit: &WritePermit, name: &str) -> Result<bool> {
        let mut tx = self.write(permit).await?;
        let robots: Vec<String> = sqlx::query_scalar(sql::accounts::ORGANIZATION_ROBOTS)
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
        for robot in &robots {
            forget_principal(&mut tx, robot).await?;
        }
        // Teams, their members and the robots go with the organization (ON DELETE CASCADE).
        let deleted = sqlx::query(sql::accounts::DELETE_ORGANIZATION)
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
        let organization_exists: Option<i32> =
            sqlx::query_scalar(sql::accounts::ORGANIZATION_EXISTS)
                .bind(organization)
                .fetch_optional(&mut *tx)
                .await?;
        if organization_exists.is_none() {
            return Ok(AccountChange::Missing("organization"));
        }
        sqlx::query(sql::accounts::PUT_TEAM)
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
                sqlx::query(sql::accounts::DELETE_TEAM)
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
        let team_exists: Option<i32> = sqlx::query_scalar(sql::accounts::TEAM_EXISTS)
            .bind(organization)
            .bind(team)
            .fetch_optional(&mut *tx)
            .await?;
        if team_exists.is_none() {
            return Ok(AccountChange::Missing("team"));
        }
        // A robot joins only its own organization's teams.
        let member_exists: Option<i32> = sqlx::query_scalar(sql::accounts::MEMBER_EXISTS)
            .bind(member)
            .bind(organization)
            .fetch_optional(&mut *tx)
            .await?;
        if member_exists.is_none() {
            return Ok(AccountChange::Missing("user or robot of the organization"));
        }
        sqlx::query(sql::accounts::ADD_TEAM_MEMBER)
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
                sqlx::query(sql::accounts::REMOVE_TEAM_MEMBER)
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
        let organization_exists: Option<i32> =
            sqlx::query_scalar(sql::accounts::ORGANIZATION_EXISTS)
                .bind(&robot.organization)
                .fetch_optional(&mut *tx)
                .await?;
        if organization_exists.is_none() {
            return Ok(AccountChange::Missing("organization"));
        }
        let inserted = sqlx::query(sql::accounts::INSERT_ROBOT)
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
                sqlx::query(sql::accounts::UPDATE_ROBOT)
                    .bind(name)
                    .bind(token_hash)
                    .bind(admin)
                    .bind(now_millis()),
            )
            .await?;
        Ok(updated == 1)
    }

    async fn delete_robot(&self, permit: &WritePermit, name: &str) -> Result<bool> {
        self.delete_principal(permit, sql::accounts::DELETE_ROBOT, name)
            .await
    }

    async fn put_grant(&self, permit: &WritePermit, grant: &GrantRecord) -> Result<AccountChange> {
        let mut tx = self.write(permit).await?;
        if !principal_exists(&mut tx, &grant.principal).await? {
            return Ok(AccountChange::Missing("user or robot"));
        }
        sqlx::query(sql::accounts::PUT_GRANT)
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
                sqlx::query(sql::accounts::DELETE_GRANT)
                    .bind(repository)
                    .bind(principal),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn put_visibility(&self, permit: &WritePermit, rule: &VisibilityRule) -> Result<()> {
        self.execute(
            permit,
            sqlx::query(sql::accounts::PUT_VISIBILITY)
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
                sqlx::query(sql::accounts::DELETE_VISIBILITY).bind(pattern),
            )
            .await?;
        Ok(deleted == 1)
    }
}

async fn insert_user(tx: &mut Transaction<'static, Sqlite>, user: &UserRecord) -> Result<()> {
    sqlx::query(sql::accounts::INSERT_USER)
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(user.superuser)
        .bind(user.created_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
