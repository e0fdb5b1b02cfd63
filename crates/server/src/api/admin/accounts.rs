//! Accounts through the admin API — users, organizations, teams, robots, grants, visibility —
//! each handler a thin call of [`Accounts`], which decides who may do what.
//!
//! - `GET /api/v1/users`, `POST /api/v1/users` `{"name", "password", "superuser"}`,
//!   `DELETE /api/v1/users/{name}`, `PUT /api/v1/users/{name}/password` `{"password"}`,
//!   `PUT /api/v1/users/{name}/superuser` `{"superuser"}`, `GET /api/v1/users/{name}/grants`;
//! - `GET`/`POST /api/v1/organizations` `{"name"}`, `DELETE /api/v1/organizations/{org}`,
//!   `GET /api/v1/organizations/{org}/teams`, `PUT`/`DELETE .../teams/{team}` `{"role"}`,
//!   `PUT`/`DELETE .../teams/{team}/members/{member}`, `GET .../robots`;
//! - `POST /api/v1/robots` `{"name", "description", "admin"}` (answers the token, once),
//!   `POST /api/v1/robots/{name}/token` (a new token), `PUT /api/v1/robots/{name}/admin`
//!   `{"admin"}`, `DELETE /api/v1/robots/{name}`;
//! - `GET /api/v1/grants?repository=`, `PUT /api/v1/grants` `{"repository", "principal",
//!   "role"}`, `DELETE /api/v1/grants?repository=&principal=`;
//! - `GET /api/v1/visibility`, `PUT /api/v1/visibility` `{"pattern", "public"}`,
//!   `DELETE /api/v1/visibility?pattern=`.
//!
//! Changes are writes: while the registry is read-only they are refused with 503 and
//! `Retry-After`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{AdminCaller, AdminError};
use crate::api::AppState;
use wharf_auth::Accounts;
use wharf_auth::accounts::AccountError;
use wharf_core::role::Role;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", get(users).post(add_user))
        .route("/api/v1/users/{name}", axum::routing::delete(remove_user))
        .route("/api/v1/users/{name}/password", put(set_password))
        .route("/api/v1/users/{name}/superuser", put(set_superuser))
        .route("/api/v1/users/{name}/grants", get(grants_of))
        .route(
            "/api/v1/organizations",
            get(organizations).post(add_organization),
        )
        .route(
            "/api/v1/organizations/{org}",
            axum::routing::delete(remove_organization),
        )
        .route("/api/v1/organizations/{org}/teams", get(teams))
        .route(
            "/api/v1/organizations/{org}/teams/{team}",
            put(put_team).delete(remove_team),
        )
        .route(
            "/api/v1/organizations/{org}/teams/{team}/members/{member}",
            put(add_member).delete(remove_member),
        )
        .route("/api/v1/organizations/{org}/robots", get(robots))
        .route("/api/v1/robots", post(add_robot))
        .route("/api/v1/robots/{name}", axum::routing::delete(remove_robot))
        .route("/api/v1/robots/{name}/token", post(renew_robot_token))
        .route("/api/v1/robots/{name}/admin", put(set_robot_admin))
        .route("/api/v1/grants", get(grants_on).put(grant).delete(revoke))
        .route(
            "/api/v1/visibility",
            get(visibility)
                .put(set_visibility)
                .delete(remove_visibility),
        )
}

impl From<AccountError> for AdminError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Denied(why) => AdminError::new(StatusCode::FORBIDDEN, "DENIED", why),
            AccountError::NotFound(why) => AdminError::new(StatusCode::NOT_FOUND, "NOT_FOUND", why),
            AccountError::Conflict(why) => AdminError::new(StatusCode::CONFLICT, "CONFLICT", why),
            AccountError::Invalid(why) => AdminError::invalid(why),
            AccountError::Refused(refused) => {
                AdminError::refused(refused, "account changes wait until it is read-write")
            }
            other => AdminError::internal(other),
        }
    }
}

fn accounts(state: &AppState, caller: AdminCaller) -> Accounts {
    Accounts::new(state.registry.clone(), (*caller.0).clone())
}

/// Parses a JSON body, answering 400 with what is expected.
fn body<T: DeserializeOwned>(bytes: &Bytes, expected: &str) -> Result<T, AdminError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AdminError::invalid(format!("the body must be JSON {expected}: {e}")))
}

fn done() -> Response {
    Json(json!({ "done": true })).into_response()
}

fn created(value: serde_json::Value) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

type Handled = Result<Response, AdminError>;

// ---- Users ----

async fn users(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
) -> Handled {
    let users = accounts(&state, caller).users().await?;
    Ok(Json(json!({ "users": users })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    superuser: bool,
}

async fn add_user(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    bytes: Bytes,
) -> Handled {
    let user: NewUser = body(
        &bytes,
        r#"{"name": "alice", "password": "...", "superuser": false}"#,
    )?;
    accounts(&state, caller)
        .add_user(&user.name, &user.password, user.superuser)
        .await?;
    Ok(created(json!({ "name": user.name })))
}

async fn remove_user(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
) -> Handled {
    accounts(&state, caller).remove_user(&name).await?;
    Ok(done())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Handled {
    let request: NewPassword = body(&bytes, r#"{"password": "..."}"#)?;
    accounts(&state, caller)
        .set_password(&name, &request.password)
        .await?;
    Ok(done())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Superuser {
    superuser: bool,
}

async fn set_superuser(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Handled {
    let request: Superuser = body(&bytes, r#"{"superuser": true}"#)?;
    accounts(&state, caller)
        .set_superuser(&name, request.superuser)
        .await?;
    Ok(done())
}

async fn grants_of(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
) -> Handled {
    let grants = accounts(&state, caller).grants_of(&name).await?;
    Ok(Json(json!({ "grants": grants })).into_response())
}

// ---- Organizations, teams, robots ----

async fn organizations(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
) -> Handled {
    let organizations = accounts(&state, caller).organizations().await?;
    Ok(Json(json!({ "organizations": organizations })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

async fn add_organization(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    bytes: Bytes,
) -> Handled {
    let request: Named = body(&bytes, r#"{"name": "acme"}"#)?;
    accounts(&state, caller)
        .add_organization(&request.name)
        .await?;
    Ok(created(json!({ "name": request.name })))
}

async fn remove_organization(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(org): Path<String>,
) -> Handled {
    accounts(&state, caller).remove_organization(&org).await?;
    Ok(done())
}

async fn teams(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(org): Path<String>,
) -> Handled {
    let teams = accounts(&state, caller).teams(&org).await?;
    Ok(Json(json!({ "teams": teams })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamRole {
    role: Role,
}

async fn put_team(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path((org, team)): Path<(String, String)>,
    bytes: Bytes,
) -> Handled {
    let request: TeamRole = body(&bytes, r#"{"role": "read" | "write" | "admin"}"#)?;
    accounts(&state, caller)
        .put_team(&org, &team, request.role)
        .await?;
    Ok(done())
}

async fn remove_team(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path((org, team)): Path<(String, String)>,
) -> Handled {
    accounts(&state, caller).remove_team(&org, &team).await?;
    Ok(done())
}

async fn add_member(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path((org, team, member)): Path<(String, String, String)>,
) -> Handled {
    accounts(&state, caller)
        .add_member(&org, &team, &member)
        .await?;
    Ok(done())
}

async fn remove_member(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path((org, team, member)): Path<(String, String, String)>,
) -> Handled {
    accounts(&state, caller)
        .remove_member(&org, &team, &member)
        .await?;
    Ok(done())
}

async fn robots(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(org): Path<String>,
) -> Handled {
    let robots = accounts(&state, caller).robots(&org).await?;
    Ok(Json(json!({ "robots": robots })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRobot {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    admin: bool,
}

async fn add_robot(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    bytes: Bytes,
) -> Handled {
    let request: NewRobot = body(
        &bytes,
        r#"{"name": "acme+ci", "description": "...", "admin": false}"#,
    )?;
    let token = accounts(&state, caller)
        .add_robot(&request.name, &request.description, request.admin)
        .await?;
    Ok(created(json!({ "name": request.name, "token": token })))
}

async fn renew_robot_token(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
) -> Handled {
    let token = accounts(&state, caller).renew_robot_token(&name).await?;
    Ok(Json(json!({ "name": name, "token": token })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RobotAdmin {
    admin: bool,
}

async fn set_robot_admin(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Handled {
    let request: RobotAdmin = body(&bytes, r#"{"admin": true}"#)?;
    accounts(&state, caller)
        .set_robot_admin(&name, request.admin)
        .await?;
    Ok(done())
}

async fn remove_robot(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
) -> Handled {
    accounts(&state, caller).remove_robot(&name).await?;
    Ok(done())
}

// ---- Grants and visibility ----

#[derive(Deserialize)]
struct GrantQuery {
    repository: Option<String>,
    principal: Option<String>,
}

fn required(value: Option<String>, name: &str) -> Result<String, AdminError> {
    value.ok_or_else(|| AdminError::invalid(format!("give ?{name}=")))
}

async fn grants_on(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Query(query): Query<GrantQuery>,
) -> Handled {
    let repository = required(query.repository, "repository")?;
    let grants = accounts(&state, caller).grants_on(&repository).await?;
    Ok(Json(json!({ "grants": grants })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGrant {
    repository: String,
    principal: String,
    role: Role,
}

async fn grant(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    bytes: Bytes,
) -> Handled {
    let request: NewGrant = body(
        &bytes,
        r#"{"repository": "acme/app", "principal": "alice", "role": "write"}"#,
    )?;
    accounts(&state, caller)
        .grant(&request.repository, &request.principal, request.role)
        .await?;
    Ok(done())
}

async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Query(query): Query<GrantQuery>,
) -> Handled {
    let repository = required(query.repository, "repository")?;
    let principal = required(query.principal, "principal")?;
    accounts(&state, caller)
        .revoke(&repository, &principal)
        .await?;
    Ok(done())
}

async fn visibility(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
) -> Handled {
    let rules = accounts(&state, caller).visibility().await?;
    Ok(Json(json!({ "visibility": rules })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVisibility {
    pattern: String,
    public: bool,
}

async fn set_visibility(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    bytes: Bytes,
) -> Handled {
    let request: NewVisibility = body(
        &bytes,
        r#"{"pattern": "acme/app" or "acme/*", "public": true}"#,
    )?;
    accounts(&state, caller)
        .set_visibility(&request.pattern, request.public)
        .await?;
    Ok(done())
}

#[derive(Deserialize)]
struct PatternQuery {
    pattern: Option<String>,
}

async fn remove_visibility(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Query(query): Query<PatternQuery>,
) -> Handled {
    let pattern = required(query.pattern, "pattern")?;
    accounts(&state, caller).remove_visibility(&pattern).await?;
    Ok(done())
}
