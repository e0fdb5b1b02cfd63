//! Token authentication through the HTTP API: the challenge and token flow, every endpoint for
//! every kind of caller, token edge cases, refresh tokens, robots, the catalog, failed-login
//! limits, account management, and logins and pulls while read-only writing nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wharf_auth::keys::{SigningKey, generate_pem};
use wharf_core::digest::Digest;

use crate::app::{
    ADMIN_PASSWORD, OCI_MANIFEST, TestApp, TestImage, descriptor, expect_error, header, location,
    random_bytes, with_query,
};

/// Credentials: a user's (or robot's) name and secret.
type Credentials<'a> = Option<(&'a str, &'a str)>;

/// `GET /auth/token` with optional Basic credentials and scopes; returns the answer.
async fn token_answer(
    app: &TestApp,
    credentials: Credentials<'_>,
    scopes: &[&str],
) -> reqwest::Response {
    let query: String = scopes
        .iter()
        .map(|s| format!("&scope={}", percent_encode(s)))
        .collect();
    let mut request = app
        .http
        .get(format!("{}/auth/token?service=wharf{query}", app.url));
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    request.send().await.unwrap()
}

/// A token for these credentials and scopes.
async fn token(app: &TestApp, credentials: Credentials<'_>, scopes: &[&str]) -> String {
    let response = token_answer(app, credentials, scopes).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await.unwrap()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    body["token"].as_str().unwrap().to_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A request with a bearer token.
fn with_token(app: &TestApp, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    app.http
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(token)
}

/// As the superuser, over the admin API: asserts success and returns the answer.
async fn admin(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let response = app.request(method, path).json(&body).send().await.unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

/// The organization `acme` with teams readers, writers and admins, one user in each, the robot
/// `acme+ci` among the writers, and `acme/public` public. Returns the robot's token.
async fn populate(app: &TestApp) -> String {
    for user in ["reader", "writer", "orgadmin", "outsider"] {
        admin(
            app,
            Method::POST,
            "/api/v1/users",
            json!({ "name": user, "password": password(user) }),
        )
        .await;
    }
    admin(
        app,
        Method::POST,
        "/api/v1/organizations",
        json!({ "name": "acme" }),
    )
    .await;
    for (team, role, member) in [
        ("readers", "read", "reader"),
        ("writers", "write", "writer"),
        ("admins", "admin", "orgadmin"),
    ] {
        admin(
            app,
            Method::PUT,
            &format!("/api/v1/organizations/acme/teams/{team}"),
            json!({ "role": role }),
        )
        .await;
        admin(
            app,
            Method::PUT,
            &format!("/api/v1/organizations/acme/teams/{team}/members/{member}"),
            json!({}),
        )
        .await;
    }
    let robot = admin(
        app,
        Method::POST,
        "/api/v1/robots",
        json!({ "name": "acme+ci", "description": "CI" }),
    )
    .await;
    admin(
        app,
        Method::PUT,
        "/api/v1/organizations/acme/teams/writers/members/acme+ci",
        json!({}),
    )
    .await;
    admin(
        app,
        Method::PUT,
        "/api/v1/visibility",
        json!({ "pattern": "acme/public", "public": true }),
    )
    .await;
    robot["token"].as_str().unwrap().to_owned()
}

fn password(user: &str) -> String {
    format!("password-of-{user}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Reader,
    Writer,
    OrgAdmin,
    Robot,
    Superuser,
}

impl Who {
    const ALL: [Who; 6] = [
        Who::Anonymous,
        Who::Reader,
        Who::Writer,
        Who::OrgAdmin,
        Who::Robot,
        Who::Superuser,
    ];

    fn credentials(self, robot_token: &str) -> Option<(String, String)> {
        let user = |name: &str| Some((name.to_owned(), password(name)));
        match self {
            Who::Anonymous => None,
            Who::Reader => user("reader"),
            Who::Writer => user("writer"),
            Who::OrgAdmin => user("orgadmin"),
            Who::Robot => Some(("acme+ci".to_owned(), robot_token.to_owned())),
            Who::Superuser => Some(("admin".to_owned(), ADMIN_PASSWORD.to_owned())),
        }
    }

    /// What the caller may do on `acme/<repo>`.
    fn may(self, public: bool, action: &str) -> bool {
        match self {
            Who::Anonymous => public && action == "pull",
            Who::Reader => action == "pull",
            Who::Writer | Who::OrgAdmin | Who::Robot | Who::Superuser => true,
        }
    }
}

/// Every registry endpoint, with the action it needs and the status it answers on success.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    TagsList,
    GetManifest,
    HeadManifest,
    GetBlob,
    HeadBlob,
    Referrers,
    StartUpload,
    PatchUpload,
    FinishUpload,
    UploadStatus,
    CancelUpload,
    PutManifest,
    DeleteManifest,
    DeleteBlob,
}

impl Endpoint {
    const ALL: [Endpoint; 14] = [
        Endpoint::TagsList,
        Endpoint::GetManifest,
        Endpoint::HeadManifest,
        Endpoint::GetBlob,
        Endpoint::HeadBlob,
        Endpoint::Referrers,
        Endpoint::StartUpload,
        Endpoint::PatchUpload,
        Endpoint::FinishUpload,
        Endpoint::UploadStatus,
        Endpoint::CancelUpload,
        Endpoint::PutManifest,
        Endpoint::DeleteManifest,
        Endpoint::DeleteBlob,
    ];

    fn action(self) -> &'static str {
        use Endpoint::*;
        match self {
            TagsList | GetManifest | HeadManifest | GetBlob | HeadBlob | Referrers => "pull",
            StartUpload | PatchUpload | FinishUpload | UploadStatus | CancelUpload
            | PutManifest => "push",
            DeleteManifest | DeleteBlob => "delete",
        }
    }

    fn success(self) -> StatusCode {
        use Endpoint::*;
        match self {
            TagsList | GetManifest | HeadManifest | GetBlob | HeadBlob | Referrers => {
                StatusCode::OK
            }
            StartUpload | PatchUpload | DeleteManifest | DeleteBlob => StatusCode::ACCEPTED,
            FinishUpload | PutManifest => StatusCode::CREATED,
            UploadStatus | CancelUpload => StatusCode::NO_CONTENT,
        }
    }

    /// Prepares what the endpoint works on (as the superuser), then calls it with `token`.
    async fn call(self, app: &TestApp, repo: &str, seed: &TestImage, token: &str) -> StatusCode {
        use Endpoint::*;
        let layer = Digest::sha256_of(&seed.layers[0]);
        let (method, path, body): (Method, String, Option<Vec<u8>>) = match self {
            TagsList => (Method::GET, format!("/v2/{repo}/tags/list"), None),
            GetManifest => (Method::GET, format!("/v2/{repo}/manifests/v1"), None),
            HeadManifest => (Method::HEAD, format!("/v2/{repo}/manifests/v1"), None),
            GetBlob => (Method::GET, format!("/v2/{repo}/blobs/{layer}"), None),
            HeadBlob => (Method::HEAD, format!("/v2/{repo}/blobs/{layer}"), None),
            Referrers => (
                Method::GET,
                format!("/v2/{repo}/referrers/{}", seed.digest),
                None,
            ),
            StartUpload => (Method::POST, format!("/v2/{repo}/blobs/uploads/"), None),
            PatchUpload => (
                Method::PATCH,
                app.open_upload(repo).await,
                Some(b"chunk".to_vec()),
            ),
            FinishUpload => {
                let content = random_bytes(100);
                let digest = Digest::sha256_of(&content);
                let location = app.open_upload(repo).await;
                (
                    Method::PUT,
                    with_query(&location, &format!("digest={digest}")),
                    Some(content),
                )
            }
            UploadStatus => (Method::GET, app.open_upload(repo).await, None),
            CancelUpload => (Method::DELETE, app.open_upload(repo).await, None),
            PutManifest => {
                let tag = format!(
                    "t{}",
                    Digest::sha256_of(&random_bytes(8)).hex()[..8].to_owned()
                );
                (
                    Method::PUT,
                    format!("/v2/{repo}/manifests/{tag}"),
                    Some(unique_manifest(seed)),
                )
            }
            DeleteManifest => {
                let manifest = unique_manifest(seed);
                let digest = Digest::sha256_of(&manifest);
                let response = app
                    .put_manifest(repo, &digest.to_string(), OCI_MANIFEST, &manifest)
                    .await;
                assert_eq!(response.status(), StatusCode::CREATED);
                (
                    Method::DELETE,
                    format!("/v2/{repo}/manifests/{digest}"),
                    None,
                )
            }
            DeleteBlob => {
                let digest = app.push_blob(repo, &random_bytes(50)).await;
                (Method::DELETE, format!("/v2/{repo}/blobs/{digest}"), None)
            }
        };
        let path = path.strip_prefix(&app.url).unwrap_or(&path).to_owned();
        let mut request = with_token(app, method, &path, token);
        if let Some(body) = body {
            request = request
                .header(
                    "content-type",
                    if matches!(self, PutManifest) {
                        OCI_MANIFEST
                    } else {
                        "application/octet-stream"
                    },
                )
                .body(body);
        }
        request.send().await.unwrap().status()
    }
}

/// A manifest of the seed image's blobs that no other call makes.
fn unique_manifest(seed: &TestImage) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &seed.config),
        "layers": seed.layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l)).collect::<Vec<_>>(),
        "annotations": { "nonce": Digest::sha256_of(&random_bytes(8)).to_string() },
    }))
    .unwrap()
}

#[tokio::test]
async fn every_endpoint_for_every_caller_on_public_and_private_repositories() {
    let app = TestApp::start_with_auth(|_| {}).await;
    let robot = populate(&app).await;
    let public_seed = app.push_image("acme/public", "v1", 1).await;
    let private_seed = app.push_image("acme/private", "v1", 1).await;

    let mut mismatches = Vec::new();
    let mut checked = 0;
    for who in Who::ALL {
        let credentials = who.credentials(&robot);
        let credentials = credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        for (repo, public, seed) in [
            ("acme/public", true, &public_seed),
            ("acme/private", false, &private_seed),
        ] {
            let scope = format!("repository:{repo}:pull,push,delete");
            let token = token(&app, credentials, &[&scope]).await;
            for endpoint in Endpoint::ALL {
                let expected = if who.may(public, endpoint.action()) {
                    endpoint.success()
                } else if who == Who::Anonymous {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::FORBIDDEN
                };
                let status = endpoint.call(&app, repo, seed, &token).await;
                checked += 1;
                if status != expected {
                    mismatches.push(format!(
                        "{who:?} {endpoint:?} {repo}: {status}, expected {expected}"
                    ));
                }
            }
        }
        // The base endpoint answers every token holder, anonymous ones too.
        let token = token(&app, credentials, &[]).await;
        assert_eq!(
            with_token(&app, Method::GET, "/v2/", &token)
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        // The admin API is for registry administrators only.
        let mut request = app.http.get(format!("{}/api/v1/state", app.url));
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        let expected = match who {
            Who::Superuser => StatusCode::OK,
            Who::Anonymous => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        assert_eq!(
            request.send().await.unwrap().status(),
            expected,
            "{who:?} on the admin API"
        );
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} wrong:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(checked, 6 * 2 * 14);
}

#[tokio::test]
async fn clients_are_challenged_and_sent_to_the_token_endpoint() {
    let mut app = TestApp::start_with_auth(|_| {}).await;
    app.act_as(None);
    let response = app.get("/v2/").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let host = app.url.strip_prefix("http://").unwrap();
    assert_eq!(
        header(&response, "www-authenticate"),
        format!("Bearer realm=\"http://{host}/auth/token\",service=\"wharf\"")
    );
    assert_eq!(
        header(&response, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let response = app.get("/v2/team/app/manifests/latest").await;
    assert_eq!(
        header(&response, "www-authenticate"),
        format!(
            "Bearer realm=\"http://{host}/auth/token\",service=\"wharf\",scope=\"repository:team/app:pull\""
        )
    );
    expect_error(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let response = app
        .request(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert!(
        header(&response, "www-authenticate").ends_with("scope=\"repository:team/app:pull,push\"")
    );
    let response = app.get("/v2/_catalog").await;
    assert!(header(&response, "www-authenticate").ends_with("scope=\"registry:catalog:*\""));

    // Wrong credentials at the token endpoint, and straight at the registry.
    let response = token_answer(&app, Some(("admin", "wrong password")), &[]).await;
    expect_error(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let response = token_answer(&app, Some(("nobody", "whatever-password")), &[]).await;
    let message = expect_error(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(
        message, "incorrect username or password",
        "which part is wrong is not said"
    );
    app.act_as(Some(("admin", "wrong password")));
    expect_error(
        app.get("/v2/").await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;

    // Basic credentials straight at the registry work for everything.
    app.act_as(Some(("admin", ADMIN_PASSWORD)));
    assert_eq!(app.get("/v2/").await.status(), StatusCode::OK);
    let image = app.push_image("team/app", "v1", 2).await;
    let response = app.get("/v2/team/app/manifests/v1").await;
    assert_eq!(response.bytes().await.unwrap(), image.manifest);

    // A configured realm is given as it is.
    let app = TestApp::start_with_auth(|c| {
        c.auth.realm = Some("https://registry.example.com/auth/token".to_owned())
    })
    .await;
    let response = app
        .http
        .get(format!("{}/v2/", app.url))
        .send()
        .await
        .unwrap();
    assert!(
        header(&response, "www-authenticate")
            .starts_with("Bearer realm=\"https://registry.example.com/auth/token\"")
    );
}

/// A token holder that asked for too little is told which scope to ask for: a read with a 401
/// (clients take it for "not there" or fetch that token), a write with a 403 `DENIED` that
/// carries the challenge (oras-py fetches a new token only on a 403).
#[tokio::test]
async fn a_token_holder_that_asked_for_too_little_is_told_to_ask_again() {
    let app = TestApp::start_with_auth(|_| {}).await;
    populate(&app).await;
    app.push_image("acme/app", "v1", 1).await;
    let writer = password("writer");
    let pull_only = token(
        &app,
        Some(("writer", &writer)),
        &["repository:acme/app:pull"],
    )
    .await;
    let host = app.url.strip_prefix("http://").unwrap();
    let challenge = |scope: &str| {
        format!(
            "Bearer realm=\"http://{host}/auth/token\",service=\"wharf\",scope=\"{scope}\",error=\"insufficient_scope\""
        )
    };
    let response = with_token(
        &app,
        Method::POST,
        "/v2/acme/app/blobs/uploads/",
        &pull_only,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        header(&response, "www-authenticate"),
        challenge("repository:acme/app:pull,push"),
        "the writer may push: ask for a token that says so"
    );
    let message = expect_error(response, StatusCode::FORBIDDEN, "DENIED").await;
    assert_eq!(
        message,
        "the token does not grant this: fetch one for repository:acme/app:pull,push"
    );
    let response = with_token(
        &app,
        Method::DELETE,
        "/v2/acme/app/manifests/v1",
        &pull_only,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        header(&response, "www-authenticate"),
        challenge("repository:acme/app:pull,delete")
    );
    expect_error(response, StatusCode::FORBIDDEN, "DENIED").await;
    // A read is a 401, with the same challenge.
    let response = with_token(&app, Method::GET, "/v2/acme/other/tags/list", &pull_only)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&response, "www-authenticate"),
        challenge("repository:acme/other:pull")
    );
    expect_error(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // A reader asking for push gets a token without it: asking for more is not an error...
    let reader = password("reader");
    let response = token_answer(
        &app,
        Some(("reader", &reader)),
        &["repository:acme/app:pull,push,delete"],
    )
    .await;
    let body: Value = response.json().await.unwrap();
    let claims = claims(body["token"].as_str().unwrap());
    assert_eq!(
        claims["access"],
        json!([{ "type": "repository", "name": "acme/app", "actions": ["pull"] }])
    );
    assert_eq!(claims["sub"], "reader");
    assert_eq!(claims["aud"], "wharf");
    // ...and the push with it is denied for good (a new token would not grant it either).
    let token = body["token"].as_str().unwrap();
    let response = with_token(&app, Method::POST, "/v2/acme/app/blobs/uploads/", token)
        .send()
        .await
        .unwrap();
    let message = expect_error(response, StatusCode::FORBIDDEN, "DENIED").await;
    assert_eq!(message, "requested access to the resource is denied");
    // A token for one repository does not open another.
    let response = with_token(&app, Method::GET, "/v2/acme/other/tags/list", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// `docker login` asks `GET /auth/token?offline_token=true` with Basic credentials: it gets no
/// refresh token, so docker keeps the credentials, not an identity token podman and skopeo
/// refuse to log in over. The OAuth2 form with `access_type=offline` still gets one.
#[tokio::test]
async fn a_docker_login_gets_no_refresh_token_and_the_oauth2_form_does() {
    let app = TestApp::start_with_auth(|_| {}).await;
    populate(&app).await;
    let writer = password("writer");
    let response = app
        .http
        .get(format!(
            "{}/auth/token?account=writer&client_id=docker&offline_token=true&service=wharf",
            app.url
        ))
        .basic_auth("writer", Some(&writer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["token"].is_string(), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");

    let response = oauth(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "writer"),
            ("password", &writer),
            ("client_id", "docker"),
            ("access_type", "offline"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["refresh_token"].is_string(), "{body}");
}

/// The claims of a JWT, unverified (the test looks at what the registry issued).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// Signs claims with a key, as the registry would.
fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(key.algorithm);
    header.kid = Some(key.id.clone());
    jsonwebtoken::encode(&header, claims, key.encoding()).unwrap()
}

#[tokio::test]
async fn forged_expired_and_misdirected_tokens_are_refused() {
    let app = TestApp::start_with_auth(|_| {}).await;
    app.push_image("team/app", "v1", 1).await;
    let key_file = app.data_dir().join("auth/token-signing-key.pem");
    let key = SigningKey::from_pem(&std::fs::read(&key_file).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |adjust: &dyn Fn(&mut Value)| {
        let mut claims = json!({
            "iss": "wharf", "sub": "admin", "aud": "wharf", "exp": now + 300, "nbf": now - 1,
            "iat": now, "jti": "x", "use": "access",
            "access": [{ "type": "repository", "name": "team/app", "actions": ["pull"] }],
        });
        adjust(&mut claims);
        claims
    };
    let pull = |token: String| {
        let app = &app;
        async move {
            with_token(app, Method::GET, "/v2/team/app/manifests/v1", &token)
                .send()
                .await
                .unwrap()
        }
    };
    // The registry's own signature over the same claims works: the cases below differ by one thing.
    assert_eq!(
        pull(sign(&key, &claims(&|_| {}))).await.status(),
        StatusCode::OK
    );

    let other_key = SigningKey::from_pem(generate_pem().unwrap().as_bytes()).unwrap();
    let mut forged_kid = sign(&other_key, &claims(&|_| {}));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            sign(&key, &claims(&|c| c["exp"] = json!(now - 60))),
            "expired",
        ),
        (
            "not yet valid",
            sign(&key, &claims(&|c| c["nbf"] = json!(now + 600))),
            "not valid yet",
        ),
        (
            "another audience",
            sign(&key, &claims(&|c| c["aud"] = json!("elsewhere"))),
            "another service",
        ),
        (
            "another issuer",
            sign(&key, &claims(&|c| c["iss"] = json!("someone"))),
            "another issuer",
        ),
        (
            "a refresh token",
            sign(&key, &claims(&|c| c["use"] = json!("refresh"))),
            "not an access token",
        ),
        (
            "another key",
            sign(&other_key, &claims(&|_| {})),
            "not signed by a key of this registry",
        ),
        ("garbage", "not-a-token".to_owned(), "malformed"),
    ];
    // Another key under this registry's key id: the signature does not verify.
    let (head, rest) = forged_kid.split_once('.').unwrap();
    let mut jwt_header: Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(head)
                .unwrap(),
        )
        .unwrap()
    };
    jwt_header["kid"] = json!(key.id);
    forged_kid = {
        use base64::Engine;
        format!(
            "{}.{rest}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jwt_header.to_string())
        )
    };
    let mut all = cases;
    all.push(("a forged key id", forged_kid, "signature is invalid"));
    // A genuine token whose claims were changed (escalated to push).
    let genuine = token(
        &app,
        Some(("admin", ADMIN_PASSWORD)),
        &["repository:team/app:pull"],
    )
    .await;
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut escalated = claims_of(parts[1]);
    escalated["access"][0]["actions"] = json!(["pull", "push"]);
    let tampered = {
        use base64::Engine;
        format!(
            "{}.{}.{}",
            parts[0],
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(escalated.to_string()),
            parts[2]
        )
    };
    all.push(("tampered claims", tampered, "signature is invalid"));
    // An unsigned token.
    let unsigned = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            engine.encode(r#"{"alg":"none","typ":"JWT"}"#),
            engine.encode(claims(&|_| {}).to_string())
        )
    };
    all.push(("unsigned", unsigned, ""));
    for (what, token, reason) in all {
        let response = pull(token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        let challenge = header(&response, "www-authenticate");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        let message = expect_error(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        assert!(message.contains(reason), "{what}: {message}");
    }
}

/// Seconds since the Unix epoch, moved by `offset` (negative: ago).
fn epoch_seconds(offset: i64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .checked_add_signed(offset)
        .unwrap()
}

/// A token's `exp` and `nbf` in seconds from now, the answer to it, and what a refusal says.
type TimedToken = (i64, i64, StatusCode, &'static str);

#[tokio::test]
async fn a_token_is_accepted_within_the_leeway_past_its_times_and_refused_beyond() {
    use std::time::Duration;
    // Per leeway, tokens around it. The accepted ones sit 20 s inside the leeway and the refused
    // ones 30 s outside it (or past an instant already gone), so a slow run cannot move a token
    // across the line.
    let cases: [(u64, &[TimedToken]); 2] = [
        (
            30,
            &[
                (-10, -300, StatusCode::OK, ""),
                (-60, -300, StatusCode::UNAUTHORIZED, "has expired"),
                (300, 10, StatusCode::OK, ""),
                (300, 60, StatusCode::UNAUTHORIZED, "not valid yet"),
            ],
        ),
        (
            0,
            &[
                (-1, -300, StatusCode::UNAUTHORIZED, "has expired"),
                (300, 0, StatusCode::OK, ""),
            ],
        ),
    ];
    for (leeway, tokens) in cases {
        let app = TestApp::start_with_auth(|c| {
            c.auth.token_leeway = wharf_config::HumanDuration(Duration::from_secs(leeway));
        })
        .await;
        app.push_image("team/app", "v1", 1).await;
        let key_file = app.data_dir().join("auth/token-signing-key.pem");
        let key = SigningKey::from_pem(&std::fs::read(&key_file).unwrap()).unwrap();
        for &(exp, nbf, status, says) in tokens {
            let token = sign(
                &key,
                &json!({
                    "iss": "wharf", "sub": "admin", "aud": "wharf", "exp": epoch_seconds(exp),
                    "nbf": epoch_seconds(nbf), "iat": epoch_seconds(nbf), "jti": "x",
                    "use": "access",
                    "access": [{ "type": "repository", "name": "team/app", "actions": ["pull"] }],
                }),
            );
            let what = format!("leeway {leeway}s, exp {exp:+}s, nbf {nbf:+}s");
            let response = with_token(&app, Method::GET, "/v2/team/app/manifests/v1", &token)
                .send()
                .await
                .unwrap();
            if status == StatusCode::OK {
                assert_eq!(response.status(), StatusCode::OK, "{what}");
                continue;
            }
            let challenge = header(&response, "www-authenticate");
            assert!(
                challenge.contains("error=\"invalid_token\""),
                "{what}: {challenge}"
            );
            let message = expect_error(response, status, "UNAUTHORIZED").await;
            assert!(message.contains(says), "{what}: {message}");
        }
    }
}

fn claims_of(payload: &str) -> Value {
    use base64::Engine;
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn anonymous_callers_pull_public_repositories_only() {
    let mut app = TestApp::start_with_auth(|_| {}).await;
    populate(&app).await;
    let public = app.push_image("acme/public", "v1", 1).await;
    app.push_image("acme/private", "v1", 1).await;
    app.act_as(None);
    // With an anonymous token, as docker and podman do...
    let token = token(
        &app,
        None,
        &[
            "repository:acme/public:pull,push",
            "repository:acme/private:pull",
        ],
    )
    .await;
    let granted = claims(&token);
    assert_eq!(granted["sub"], "");
    assert_eq!(
        granted["access"],
        json!([{ "type": "repository", "name": "acme/public", "actions": ["pull"] }])
    );
    let response = with_token(&app, Method::GET, "/v2/acme/public/manifests/v1", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap(), public.manifest);
    // ...and without any token, as curl does.
    assert_eq!(
        app.get("/v2/acme/public/manifests/v1").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/v2/acme/private/manifests/v1").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let response = app
        .request(Method::POST, "/v2/acme/public/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A whole namespace can be public, with exceptions.
    app.act_as(Some(("admin", ADMIN_PASSWORD)));
    admin(
        &app,
        Method::PUT,
        "/api/v1/visibility",
        json!({ "pattern": "acme/*", "public": true }),
    )
    .await;
    admin(
        &app,
        Method::PUT,
        "/api/v1/visibility",
        json!({ "pattern": "acme/public", "public": false }),
    )
    .await;
    app.act_as(None);
    assert_eq!(
        app.get("/v2/acme/private/manifests/v1").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/v2/acme/public/manifests/v1").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_catalog_lists_what_the_caller_may_pull() {
    let mut app = TestApp::start_with_auth(|_| {}).await;
    populate(&app).await;
    for repo in ["acme/public", "acme/private", "other/secret", "writer/own"] {
        app.push_image(repo, "v1", 1).await;
    }
    let list = |token: String| {
        let app = &app;
        async move {
            let response = with_token(app, Method::GET, "/v2/_catalog?n=1", &token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            // Paged by one, to check that paging skips what is hidden.
            let mut names = Vec::new();
            let mut response = response;
            loop {
                let next = response
                    .headers()
                    .get("link")
                    .map(|l| l.to_str().unwrap().to_owned());
                let body: Value = response.json().await.unwrap();
                names.extend(
                    body["repositories"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| n.as_str().unwrap().to_owned()),
                );
                let Some(next) = next else { break };
                let path = next
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned();
                response = with_token(app, Method::GET, &path, &token)
                    .send()
                    .await
                    .unwrap();
            }
            names
        }
    };
    let catalog = ["registry:catalog:*"];
    let writer = password("writer");
    let reader = password("reader");
    assert_eq!(
        list(token(&app, Some(("admin", ADMIN_PASSWORD)), &catalog).await).await,
        ["acme/private", "acme/public", "other/secret", "writer/own"]
    );
    assert_eq!(
        list(token(&app, Some(("writer", &writer)), &catalog).await).await,
        ["acme/private", "acme/public", "writer/own"]
    );
    assert_eq!(
        list(token(&app, Some(("reader", &reader)), &catalog).await).await,
        ["acme/private", "acme/public"]
    );
    assert_eq!(
        list(token(&app, None, &catalog).await).await,
        ["acme/public"]
    );
    // A token without the catalog scope is sent back for one.
    let token = token(&app, Some(("reader", &reader)), &[]).await;
    let response = with_token(&app, Method::GET, "/v2/_catalog", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Basic credentials list directly.
    app.act_as(Some(("reader", &reader)));
    let body: Value = app.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(body["repositories"], json!(["acme/private", "acme/public"]));
}

#[tokio::test]
async fn a_mount_from_a_repository_the_caller_may_not_pull_is_a_plain_upload() {
    let app = TestApp::start_with_auth(|_| {}).await;
    populate(&app).await;
    let secret = app.push_image("other/secret", "v1", 1).await;
    let layer = Digest::sha256_of(&secret.layers[0]);
    let writer = password("writer");
    let writers = token(
        &app,
        Some(("writer", &writer)),
        &[
            "repository:acme/app:pull,push",
            "repository:other/secret:pull",
        ],
    )
    .await;
    let response = with_token(
        &app,
        Method::POST,
        &format!("/v2/acme/app/blobs/uploads/?mount={layer}&from=other/secret"),
        &writers,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "no blob of other/secret is revealed"
    );
    // Nor is it found when the mount names no source: the writer may pull only acme/*.
    let response = with_token(
        &app,
        Method::POST,
        &format!("/v2/acme/app/blobs/uploads/?mount={layer}"),
        &writers,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "automatic content discovery looks only where the caller may pull"
    );
    // The superuser may pull it, so its mount mounts, with a source or without.
    let superusers = token(
        &app,
        Some(("admin", ADMIN_PASSWORD)),
        &["repository:acme/app:pull,push"],
    )
    .await;
    let response = with_token(
        &app,
        Method::POST,
        &format!("/v2/acme/app/blobs/uploads/?mount={layer}"),
        &superusers,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let superusers = token(
        &app,
        Some(("admin", ADMIN_PASSWORD)),
        &[
            "repository:acme/app:pull,push",
            "repository:other/secret:pull",
        ],
    )
    .await;
    let response = with_token(
        &app,
        Method::POST,
        &format!("/v2/acme/app/blobs/uploads/?mount={layer}&from=other/secret"),
        &superusers,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(location(&response).ends_with(&format!("/v2/acme/app/blobs/{layer}")));
}

/// `POST /auth/token` with a form.
async fn oauth(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    app.http
        .post(format!("{}/auth/token", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_tokens_last_until_the_password_changes() {
    let app = TestApp::start_with_auth(|_| {}).await;
    populate(&app).await;
    let writer = password("writer");
    let response = oauth(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "writer"),
            ("password", &writer),
            ("service", "wharf"),
            ("client_id", "docker"),
            ("access_type", "offline"),
            (
                "scope",
                "repository:acme/app:pull,push repository:other/x:pull",
            ),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "cache-control"), "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "repository:acme/app:pull,push");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert!(
        with_token(&app, Method::GET, "/v2/", &refresh)
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::UNAUTHORIZED,
        "a refresh token is not an access token"
    );

    let trade = |refresh: String| {
        let app = &app;
        async move {
            oauth(
                app,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("client_id", "docker"),
                    ("scope", "repository:acme/app:pull"),
                ],
            )
            .await
        }
    };
    let response = trade(refresh.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["sub"],
        "writer"
    );
    assert!(
        body.get("refresh_token").is_none(),
        "only offline requests get one"
    );
    assert_eq!(
        trade(access).await.status(),
        StatusCode::UNAUTHORIZED,
        "an access token is not a refresh token"
    );

    admin(
        &app,
        Method::PUT,
        "/api/v1/users/writer/password",
        json!({ "password": "a-new-password" }),
    )
    .await;
    let response = trade(refresh).await;
    let message = expect_error(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert!(message.contains("log in again"), "{message}");
    // The form is checked.
    expect_error(
        oauth(&app, &[("grant_type", "client_credentials")]).await,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED",
    )
    .await;
    expect_error(
        oauth(&app, &[("grant_type", "password"), ("username", "writer")]).await,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED",
    )
    .await;
    let response = oauth(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "writer"),
            ("password", "a-new-password"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn robots_log_in_with_tokens_that_can_be_renewed_and_revoked() {
    let app = TestApp::start_with_auth(|_| {}).await;
    let token_v1 = populate(&app).await;
    assert!(token_v1.starts_with("wharf_rt_"), "{token_v1}");
    let login = |secret: String| {
        let app = &app;
        async move {
            token_answer(
                app,
                Some(("acme+ci", &secret)),
                &["repository:acme/app:push"],
            )
            .await
            .status()
        }
    };
    assert_eq!(login(token_v1.clone()).await, StatusCode::OK);
    let renewed = admin(
        &app,
        Method::POST,
        "/api/v1/robots/acme+ci/token",
        json!({}),
    )
    .await;
    let token_v2 = renewed["token"].as_str().unwrap().to_owned();
    assert_eq!(
        login(token_v1).await,
        StatusCode::UNAUTHORIZED,
        "the old token is revoked"
    );
    assert_eq!(login(token_v2.clone()).await, StatusCode::OK);
    // The token is never listed.
    let listed = admin(
        &app,
        Method::GET,
        "/api/v1/organizations/acme/robots",
        json!(null),
    )
    .await;
    assert_eq!(listed["robots"][0]["name"], "acme+ci");
    assert!(!listed.to_string().contains(&token_v2));
    // An admin robot may use the admin API (an operator, a backup job).
    let state = |secret: String| {
        let app = &app;
        async move {
            app.http
                .get(format!("{}/api/v1/state", app.url))
                .basic_auth("acme+ci", Some(secret))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(state(token_v2.clone()).await, StatusCode::FORBIDDEN);
    admin(
        &app,
        Method::PUT,
        "/api/v1/robots/acme+ci/admin",
        json!({ "admin": true }),
    )
    .await;
    assert_eq!(state(token_v2.clone()).await, StatusCode::OK);
    admin(&app, Method::DELETE, "/api/v1/robots/acme+ci", json!(null)).await;
    assert_eq!(
        login(token_v2).await,
        StatusCode::UNAUTHORIZED,
        "a deleted robot cannot log in"
    );
}

/// A client whose connections come from `address` (any of 127.0.0.0/8 reaches the test server).
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// A login at the token endpoint through `client`.
async fn login_with(
    app: &TestApp,
    client: &reqwest::Client,
    user: &str,
    password: &str,
) -> reqwest::Response {
    client
        .get(format!("{}/auth/token?service=wharf", app.url))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_logins_lock_an_account_out_of_one_address_only() {
    let app = TestApp::start_with_auth(|c| c.auth.failed_logins.per_account_and_address = 3).await;
    populate(&app).await;
    let (here, there) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let (writer, reader) = (password("writer"), password("reader"));
    for _ in 0..3 {
        let response = login_with(&app, &here, "writer", "wrong-password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused now, without being checked.
    let response = login_with(&app, &here, "writer", &writer).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&response, "retry-after").parse().unwrap();
    assert!(retry > 0 && retry <= 600, "{retry}");
    let message = expect_error(response, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert!(message.contains("too many failed logins"), "{message}");
    let response = here
        .get(format!("{}/v2/", app.url))
        .basic_auth("writer", Some(&writer))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "Basic credentials count too"
    );
    // Another account from the same address, and the same account from another address.
    assert_eq!(
        login_with(&app, &here, "reader", &reader).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        login_with(&app, &there, "writer", &writer).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn failed_logins_for_several_accounts_lock_their_address_out() {
    let app = TestApp::start_with_auth(|c| {
        c.auth.failed_logins.per_account_and_address = 3;
        c.auth.failed_logins.per_address = 5;
    })
    .await;
    populate(&app).await;
    let (here, there) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let reader = password("reader");
    // Refused attempts do not count: however often the locked writer tries, the address has 3.
    for _ in 0..6 {
        login_with(&app, &here, "writer", "wrong-password").await;
    }
    assert_eq!(
        login_with(&app, &here, "reader", &reader).await.status(),
        StatusCode::OK
    );
    for _ in 0..2 {
        assert_eq!(
            login_with(&app, &here, "nobody", "wrong-password")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // 5 failures for two accounts: every account is refused from the address now.
    assert_eq!(
        login_with(&app, &here, "reader", &reader).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // The admin API counts the same failures.
    let response = here
        .get(format!("{}/api/v1/state", app.url))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        login_with(&app, &there, "reader", &reader).await.status(),
        StatusCode::OK
    );
}

/// A login from `client` (a reqwest client bound to a proxy's address) on behalf of `forwarded`.
async fn login_forwarded(
    app: &TestApp,
    client: &reqwest::Client,
    forwarded: &str,
    password: &str,
) -> StatusCode {
    client
        .get(format!("{}/auth/token?service=wharf", app.url))
        .basic_auth("writer", Some(password))
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limits_count_each_forwarded_client_and_a_forged_header_grants_nothing()
 {
    let app = TestApp::start_with_auth(|c| {
        c.auth.failed_logins.per_account_and_address = 2;
        c.server.trusted_proxies = vec!["127.0.0.2".parse().unwrap()];
    })
    .await;
    populate(&app).await;
    let (proxy, stranger) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let writer = password("writer");
    // Through the proxy, one client locks itself out and not the others behind the proxy.
    for _ in 0..2 {
        assert_eq!(
            login_forwarded(&app, &proxy, "198.51.100.1", "wrong-password").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_forwarded(&app, &proxy, "198.51.100.1", &writer).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_forwarded(&app, &proxy, "198.51.100.2", &writer).await,
        StatusCode::OK,
        "another client behind the same proxy"
    );
    // From an address that is not a trusted proxy the header is ignored: forging a new
    // address each time does not escape the limit.
    for forged in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(
            login_forwarded(&app, &stranger, forged, "wrong-password").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_forwarded(&app, &stranger, "203.0.113.3", &writer).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// The status of an admin request with the app's current credentials.
async fn status_of(app: &TestApp, method: Method, path: &str, body: Value) -> StatusCode {
    let mut request = app.request(method, path);
    if !body.is_null() {
        request = request.json(&body);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn accounts_are_managed_by_who_may() {
    use Method as M;
    use StatusCode as S;
    let mut app = TestApp::start_with_auth(|_| {}).await;
    populate(&app).await;
    let users = admin(&app, M::GET, "/api/v1/users", json!(null)).await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "orgadmin", "outsider", "reader", "writer"]);
    assert!(
        !users.to_string().contains("argon2"),
        "no password hash is shown"
    );

    // Names, passwords and roles are checked.
    let checks = [
        (
            M::POST,
            "/api/v1/users",
            json!({ "name": "Bad/Name", "password": "long-enough" }),
            S::BAD_REQUEST,
        ),
        (
            M::POST,
            "/api/v1/users",
            json!({ "name": "shorty", "password": "short" }),
            S::BAD_REQUEST,
        ),
        (
            M::POST,
            "/api/v1/users",
            json!({ "name": "acme", "password": "long-enough" }),
            S::CONFLICT,
        ),
        (
            M::PUT,
            "/api/v1/organizations/acme/teams/x",
            json!({ "role": "owner" }),
            S::BAD_REQUEST,
        ),
        (
            M::PUT,
            "/api/v1/organizations/nope/teams/x",
            json!({ "role": "read" }),
            S::NOT_FOUND,
        ),
        (
            M::PUT,
            "/api/v1/grants",
            json!({ "repository": "acme/app", "principal": "ghost", "role": "read" }),
            S::NOT_FOUND,
        ),
    ];
    for (method, path, body, expected) in checks {
        assert_eq!(
            status_of(&app, method, path, body.clone()).await,
            expected,
            "{path} {body}"
        );
    }
    let response = app
        .request(M::POST, "/api/v1/users")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), S::BAD_REQUEST);

    // An organization's administrator manages its teams and robots, not another's, nor users;
    // administering acme's repositories, also their grants and visibility.
    admin(
        &app,
        M::POST,
        "/api/v1/organizations",
        json!({ "name": "globex" }),
    )
    .await;
    let orgadmin = password("orgadmin");
    app.act_as(Some(("orgadmin", &orgadmin)));
    let as_orgadmin = [
        (
            M::PUT,
            "/api/v1/organizations/acme/teams/qa",
            json!({ "role": "read" }),
            S::OK,
        ),
        (
            M::PUT,
            "/api/v1/organizations/acme/teams/qa/members/outsider",
            json!(null),
            S::OK,
        ),
        (
            M::POST,
            "/api/v1/robots",
            json!({ "name": "acme+deploy" }),
            S::CREATED,
        ),
        (
            M::POST,
            "/api/v1/robots",
            json!({ "name": "acme+root", "admin": true }),
            S::FORBIDDEN,
        ),
        (
            M::PUT,
            "/api/v1/organizations/globex/teams/qa",
            json!({ "role": "read" }),
            S::FORBIDDEN,
        ),
        (M::GET, "/api/v1/users", json!(null), S::FORBIDDEN),
        (M::GET, "/api/v1/state", json!(null), S::FORBIDDEN),
        (
            M::PUT,
            "/api/v1/grants",
            json!({ "repository": "acme/app", "principal": "outsider", "role": "write" }),
            S::OK,
        ),
        (
            M::PUT,
            "/api/v1/visibility",
            json!({ "pattern": "acme/*", "public": true }),
            S::OK,
        ),
        (
            M::PUT,
            "/api/v1/visibility",
            json!({ "pattern": "globex/*", "public": true }),
            S::FORBIDDEN,
        ),
    ];
    for (method, path, body, expected) in as_orgadmin {
        assert_eq!(
            status_of(&app, method, path, body.clone()).await,
            expected,
            "orgadmin: {path} {body}"
        );
    }
    let grants: Value = app
        .get("/api/v1/grants?repository=acme/app")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        grants["grants"],
        json!([{ "repository": "acme/app", "principal": "outsider", "role": "write" }])
    );

    // A user changes their own password, and only theirs; owns their namespace.
    let outsider = password("outsider");
    app.act_as(Some(("outsider", &outsider)));
    let hijack = json!({ "password": "hijacked-password" });
    assert_eq!(
        status_of(&app, M::PUT, "/api/v1/users/reader/password", hijack).await,
        S::FORBIDDEN
    );
    let own = json!({ "password": "my-new-password" });
    assert_eq!(
        status_of(&app, M::PUT, "/api/v1/users/outsider/password", own).await,
        S::OK
    );
    app.act_as(Some(("outsider", "my-new-password")));
    app.push_image("outsider/tool", "v1", 1).await;
    app.push_image("acme/app", "v1", 1).await;
    let mine: Value = app
        .get("/api/v1/users/outsider/grants")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["grants"][0]["repository"], "acme/app");
    let share = json!({ "repository": "outsider/tool", "principal": "reader", "role": "read" });
    assert_eq!(
        status_of(&app, M::PUT, "/api/v1/grants", share).await,
        S::OK
    );
    assert_eq!(
        status_of(&app, M::PUT, "/v2/reader/x/manifests/v1", json!(null)).await,
        S::FORBIDDEN,
        "another's namespace"
    );

    // Removing a user removes their memberships and grants.
    app.act_as(Some(("admin", ADMIN_PASSWORD)));
    admin(&app, M::DELETE, "/api/v1/users/outsider", json!(null)).await;
    let teams = admin(
        &app,
        M::GET,
        "/api/v1/organizations/acme/teams",
        json!(null),
    )
    .await;
    assert!(!teams.to_string().contains("outsider"), "{teams}");
    let grants = admin(
        &app,
        M::GET,
        "/api/v1/grants?repository=acme/app",
        json!(null),
    )
    .await;
    assert_eq!(grants["grants"], json!([]));
    admin(&app, M::DELETE, "/api/v1/organizations/acme", json!(null)).await;
    let robots = app.get("/api/v1/organizations/acme/robots").await;
    assert_eq!(
        robots.json::<Value>().await.unwrap()["robots"],
        json!([]),
        "robots go with their organization"
    );
}

/// The bytes of the metadata database and its write-ahead log: unchanged means nothing was
/// written (readers do not touch them; only the shared-memory index changes).
fn database_files(app: &TestApp) -> Vec<u8> {
    let data = app.data_dir();
    ["metadata.db", "metadata.db-wal"]
        .iter()
        .flat_map(|f| std::fs::read(data.join(f)).unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn while_read_only_logins_tokens_and_pulls_work_and_write_nothing() {
    let mut app = TestApp::start_with_auth(|_| {}).await;
    let robot = populate(&app).await;
    let image = app.push_image("acme/app", "v1", 1).await;
    app.hold_read_only("maintenance", "read-only for the test")
        .await;
    app.wait_for_mode("read-only").await;
    let before = database_files(&app);

    let writer = password("writer");
    let scopes = ["repository:acme/app:pull,push"];
    let writer_token = token(&app, Some(("writer", &writer)), &scopes).await;
    token(&app, Some(("acme+ci", &robot)), &scopes).await;
    token(&app, None, &scopes).await;
    let response = oauth(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "writer"),
            ("password", &writer),
            ("access_type", "offline"),
        ],
    )
    .await;
    let refresh: Value = response.json().await.unwrap();
    let response = oauth(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = with_token(
        &app,
        Method::GET,
        "/v2/acme/app/manifests/v1",
        &writer_token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.bytes().await.unwrap(), image.manifest);
    let layer = Digest::sha256_of(&image.layers[0]);
    let response = with_token(
        &app,
        Method::GET,
        &format!("/v2/acme/app/blobs/{layer}"),
        &writer_token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.bytes().await.unwrap(), image.layers[0]);
    app.act_as(Some(("writer", &writer)));
    assert_eq!(
        app.get("/v2/acme/app/tags/list").await.status(),
        StatusCode::OK
    );
    let failed = token_answer(&app, Some(("writer", "wrong-password")), &[]).await;
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    assert!(
        before == database_files(&app),
        "logins, tokens and pulls wrote to the database"
    );

    // Writes are refused: pushes with the read-only message, account changes with 503.
    let response = with_token(
        &app,
        Method::POST,
        "/v2/acme/app/blobs/uploads/",
        &writer_token,
    )
    .send()
    .await
    .unwrap();
    let message = expect_error(response, StatusCode::METHOD_NOT_ALLOWED, "DENIED").await;
    assert!(
        message.starts_with("System is currently read-only."),
        "{message}"
    );
    app.act_as(Some(("admin", ADMIN_PASSWORD)));
    let response = app
        .request(Method::POST, "/api/v1/users")
        .json(&json!({ "name": "newcomer", "password": "long-enough" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header(&response, "retry-after").parse::<u64>().unwrap() > 0);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{body}"
    );
    assert_eq!(app.release("maintenance").await.status(), StatusCode::OK);
    app.wait_for_mode("read-write").await;
    admin(
        &app,
        Method::POST,
        "/api/v1/users",
        json!({ "name": "newcomer", "password": "long-enough" }),
    )
    .await;
}

#[tokio::test]
async fn the_first_superuser_gets_a_generated_password_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = wharf_config::Config::default();
    config.storage.data_dir = dir.path().join("data");
    config.auth.mode = wharf_config::AuthMode::Token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wharf_server::serve(config.clone(), listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let file = dir.path().join("data/admin-password");
    let response = http
        .get(format!("{url}/api/v1/state"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 32, "a long random password");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let response = http
        .get(format!("{url}/api/v1/state"))
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(&password));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    // A restart neither makes another superuser nor a new password.
    std::fs::remove_file(&file).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wharf_server::serve(config, listener, async {
        let _ = stopped.await;
    }));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!file.exists());
}

#[tokio::test]
async fn the_first_superusers_password_may_come_from_the_environment() {
    let app = TestApp::start_with_auth(|_| {}).await;
    assert!(!app.data_dir().join("admin-password").exists());
    let users = admin(&app, Method::GET, "/api/v1/users", json!(null)).await;
    assert_eq!(
        users["users"],
        json!([{ "name": "admin", "superuser": true, "created_at": users["users"][0]["created_at"] }])
    );
}

/// The id of the key that signed `token` (its header's `kid`).
fn kid(token: &str) -> String {
    use base64::Engine;
    let head = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn tokens_survive_a_restart_and_a_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (old_key, new_key) = (dir.path().join("old.pem"), dir.path().join("new.pem"));
    std::fs::write(&old_key, generate_pem().unwrap()).unwrap();
    std::fs::write(&new_key, generate_pem().unwrap()).unwrap();
    let old = old_key.clone();
    let mut app = TestApp::start_with_auth(move |c| c.auth.signing_keys = vec![old]).await;
    app.push_image("team/app", "v1", 1).await;
    let scopes = ["repository:team/app:pull"];
    let before = token(&app, Some(("admin", ADMIN_PASSWORD)), &scopes).await;
    let old_kid = kid(&before);

    // Step 1 of a rotation: the new key is added second; the old one still signs.
    app.config.auth.signing_keys = vec![old_key.clone(), new_key.clone()];
    let mut app = app.restart().await;
    let pull = |app: &TestApp, token: String| {
        let request = with_token(app, Method::GET, "/v2/team/app/manifests/v1", &token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(
        pull(&app, before.clone()).await,
        StatusCode::OK,
        "a token survives a restart"
    );
    assert_eq!(
        kid(&token(&app, Some(("admin", ADMIN_PASSWORD)), &scopes).await),
        old_kid
    );

    // Step 2: the new key signs; tokens of the old one still verify.
    app.config.auth.signing_keys = vec![new_key.clone(), old_key.clone()];
    let mut app = app.restart().await;
    let after = token(&app, Some(("admin", ADMIN_PASSWORD)), &scopes).await;
    assert_ne!(kid(&after), old_kid);
    assert_eq!(pull(&app, before.clone()).await, StatusCode::OK);
    assert_eq!(pull(&app, after.clone()).await, StatusCode::OK);

    // Step 3: the old key goes, and its tokens with it.
    app.config.auth.signing_keys = vec![new_key];
    let app = app.restart().await;
    assert_eq!(pull(&app, before).await, StatusCode::UNAUTHORIZED);
    assert_eq!(pull(&app, after).await, StatusCode::OK);
}

/// With authentication, a push is the account's: during a drain, the account whose push was
/// under way may go on; another account pushing to the same repository from the same address is
/// refused.
#[tokio::test]
async fn a_drain_tells_pushes_apart_by_account() {
    let mut app = TestApp::start_with_auth(|config| {
        config.drain.push_grace = wharf_config::HumanDuration(std::time::Duration::from_secs(60));
    })
    .await;
    populate(&app).await;
    let image = TestImage::generate(1);
    app.act_as(Some(("writer", &password("writer"))));
    app.push_blob("acme/app", &image.layers[0]).await;

    app.act_as(Some(("admin", ADMIN_PASSWORD)));
    app.hold_read_only("backup-1", "nightly backup").await;
    assert_eq!(app.state().await["effective"], "draining");

    app.act_as(Some(("orgadmin", &password("orgadmin"))));
    let response = app
        .request(Method::POST, "/v2/acme/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["errors"][0]["code"],
        "DENIED"
    );

    app.act_as(Some(("writer", &password("writer"))));
    app.push_blob("acme/app", &image.config).await;
    let response = app
        .put_manifest("acme/app", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    app.act_as(Some(("admin", ADMIN_PASSWORD)));
    let state = app.wait_for_mode("read-only").await;
    assert_eq!(state["last_transition"]["pushes_completed"], 1);
}

/// Replicas share the signing key files: a key file replaced in place (a Secret updated) is
/// followed without a restart.
#[tokio::test]
async fn a_signing_key_file_replaced_in_place_is_followed_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys").join("signing.pem");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, generate_pem().unwrap()).unwrap();
    let configured = key.clone();
    let app = TestApp::start_with_auth(move |c| c.auth.signing_keys = vec![configured]).await;
    app.push_image("team/app", "v1", 1).await;
    let scopes = ["repository:team/app:pull"];
    let before = token(&app, Some(("admin", ADMIN_PASSWORD)), &scopes).await;
    let pull = |token: &str| {
        let request = with_token(&app, Method::GET, "/v2/team/app/manifests/v1", token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(pull(&before).await, StatusCode::OK);

    // Replaced as Kubernetes updates a Secret's file: a new file renamed over the old.
    let staged = key.with_extension("new");
    std::fs::write(&staged, generate_pem().unwrap()).unwrap();
    std::fs::rename(&staged, &key).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let after = loop {
        let after = token(&app, Some(("admin", ADMIN_PASSWORD)), &scopes).await;
        if kid(&after) != kid(&before) {
            break after;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new key file was not taken up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(pull(&after).await, StatusCode::OK, "the new key signs");
    assert_eq!(
        pull(&before).await,
        StatusCode::UNAUTHORIZED,
        "the replaced key verifies no more"
    );
}
