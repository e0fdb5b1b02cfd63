//! The web UI over HTTP, as a browser without JavaScript uses it: sessions, CSRF tokens,
//! escaping, who may administer, the read-only banner and refused writes.

use reqwest::{Method, StatusCode, header};
use serde_json::json;

use std::time::Duration;

use wharf_config::HumanDuration;

use crate::app::{ADMIN_PASSWORD, HeldBody, OCI_MANIFEST, TestApp, descriptor, with_database};

/// A browser: its own cookie, no redirects followed (tests look at them).
struct Browser {
    url: String,
    http: reqwest::Client,
    cookie: Option<String>,
}

/// A page's answer.
struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            url: app.url.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        };
        let response = request.send().await.unwrap();
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            assert!(
                set.contains("HttpOnly") && set.contains("SameSite=Strict"),
                "{set}"
            );
            let pair = set.split(';').next().unwrap().to_owned();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        Page {
            status: response.status(),
            location: response
                .headers()
                .get(header::LOCATION)
                .map(|l| l.to_str().unwrap().to_owned()),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.url));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(form).unwrap();
        let request = self
            .http
            .post(format!("{}{path}", self.url))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// The CSRF token of the forms on `path`.
    async fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        csrf_of(&page.body)
    }

    async fn sign_in(&mut self, user: &str, password: &str) {
        let csrf = self.csrf("/ui/sign-in").await;
        let page = self
            .post(
                "/ui/sign-in",
                &[("csrf", &csrf), ("username", user), ("password", password)],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }
}

fn csrf_of(body: &str) -> String {
    let at = body
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    body[at..at + 64].to_owned()
}

const BANNER: &str = "Wharf is currently in read-only mode. Pulls and other read-only operations will succeed but all other operations are currently suspended.";

#[tokio::test]
async fn a_signed_in_user_browses_deletes_a_tag_and_signs_out() {
    let app = TestApp::start_with_auth(|_| {}).await;
    let image = app.push_image("team/app", "v1", 2).await;
    app.push_image("team/app", "v2", 1).await;
    let mut browser = Browser::new(&app);

    // Anonymous: the private repository is not listed, and its page is not found.
    let page = browser.get("/ui/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("team/app"), "{}", page.body);
    assert!(page.body.contains("Sign in"));
    let page = browser.get("/ui/repository?name=team/app").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);

    browser.sign_in("admin", ADMIN_PASSWORD).await;
    let page = browser.get("/ui/").await;
    assert!(page.body.contains("team/app"), "{}", page.body);
    assert!(page.body.contains("Signed in as <strong>admin</strong>"));
    let page = browser.get("/ui/repository?name=team%2Fapp").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let host = app.url.trim_start_matches("http://");
    assert!(
        page.body
            .contains(&format!("podman pull {host}/team/app:v1")),
        "{}",
        page.body
    );
    assert!(page.body.contains(&image.digest.to_string()));
    let manifest = browser
        .get(&format!(
            "/ui/manifest?name=team/app&digest={}",
            image.digest
        ))
        .await;
    assert_eq!(manifest.status, StatusCode::OK, "{}", manifest.body);
    assert!(manifest.body.contains("Layers"));

    let csrf = csrf_of(&page.body);
    let deleted = browser
        .post(
            "/ui/tags/delete",
            &[("csrf", &csrf), ("name", "team/app"), ("tag", "v2")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    assert_eq!(tags_of(&app, "team/app").await, json!(["v1"]));

    // Signed out, the old cookie is worth nothing, on the server too.
    let old_cookie = browser.cookie.clone();
    let out = browser.post("/ui/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let mut replay = Browser::new(&app);
    replay.cookie = old_cookie;
    let page = replay.get("/ui/repository?name=team/app").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    let page = replay
        .post(
            "/ui/tags/delete",
            &[("csrf", &csrf), ("name", "team/app"), ("tag", "v1")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert_eq!(tags_of(&app, "team/app").await, json!(["v1"]));
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_failed_sign_ins_are_limited() {
    let app = TestApp::start_with_auth(|_| {}).await;
    let mut browser = Browser::new(&app);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let csrf = browser.csrf("/ui/sign-in").await;
        let page = browser
            .post(
                "/ui/sign-in",
                &[
                    ("csrf", &csrf),
                    ("username", "admin"),
                    ("password", "wrong"),
                ],
            )
            .await;
        statuses.push(page.status);
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    // The token endpoint's limiter: the same account and address are slowed down.
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn forms_without_their_csrf_token_are_refused() {
    let app = TestApp::start_with_auth(|_| {}).await;
    app.push_image("team/app", "v1", 1).await;
    let mut browser = Browser::new(&app);
    browser.sign_in("admin", ADMIN_PASSWORD).await;
    for token in [
        "",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let page = browser
            .post(
                "/ui/admin/holds",
                &[("csrf", token), ("name", "admin"), ("reason", "x")],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        let page = browser
            .post(
                "/ui/tags/delete",
                &[("csrf", token), ("name", "team/app"), ("tag", "v1")],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        let page = browser.post("/ui/admin/gc", &[]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    }
    assert_eq!(app.state().await["holds"], json!([]));
    assert_eq!(tags_of(&app, "team/app").await, json!(["v1"]));
    // Malformed forms are a 400, not a 500.
    let page = browser.post("/ui/tags/delete", &[("nonsense", "1")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn markup_in_annotations_hold_reasons_and_searches_is_shown_as_text() {
    let app = TestApp::start().await;
    let config = b"{}".to_vec();
    app.push_blob("team/app", &config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [],
        "annotations": { "org.example.note": "<script>alert('annotation')</script>" },
    }))
    .unwrap();
    let response = app
        .put_manifest("team/app", "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let digest = wharf_core::digest::Digest::sha256_of(&manifest);
    app.hold_read_only("backup", "<img src=x onerror=alert('reason')>")
        .await;

    let mut browser = Browser::new(&app);
    let page = browser
        .get(&format!("/ui/manifest?name=team/app&digest={digest}"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("&lt;script&gt;alert('annotation')&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert"));
    assert!(
        page.body
            .contains("&lt;img src=x onerror=alert('reason')&gt;")
    );
    assert!(!page.body.contains("<img"));
    let admin = browser.get("/ui/admin").await;
    assert!(admin.body.contains("&lt;img src=x"));
    assert!(!admin.body.contains("<img"));
    let search = browser.get("/ui/?q=%22%3E%3Cb%3Ebold").await;
    assert_eq!(search.status, StatusCode::OK);
    assert!(
        search.body.contains("&quot;&gt;&lt;b&gt;bold"),
        "{}",
        search.body
    );
    assert!(!search.body.contains("<b>bold"));
}

#[tokio::test]
async fn a_non_administrator_gets_no_admin_page_and_no_admin_action() {
    let app = TestApp::start_with_auth(|_| {}).await;
    let response = app
        .request(Method::POST, "/api/v1/users")
        .json(&json!({ "name": "dev", "password": "dev-password-1234" }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let mut browser = Browser::new(&app);
    browser.sign_in("dev", "dev-password-1234").await;
    let home = browser.get("/ui/").await;
    assert!(!home.body.contains("Administration"), "{}", home.body);
    let csrf = csrf_of(&home.body);
    assert_eq!(browser.get("/ui/admin").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        browser.get("/ui/admin/state.json").await.status,
        StatusCode::FORBIDDEN
    );
    let hold = browser
        .post(
            "/ui/admin/holds",
            &[("csrf", &csrf), ("name", "dev"), ("reason", "mine")],
        )
        .await;
    assert_eq!(hold.status, StatusCode::FORBIDDEN);
    let gc = browser.post("/ui/admin/gc", &[("csrf", &csrf)]).await;
    assert_eq!(gc.status, StatusCode::FORBIDDEN);
    app.hold_read_only("ops", "maintenance").await;
    let release = browser
        .post(
            "/ui/admin/holds/release",
            &[("csrf", &csrf), ("name", "ops")],
        )
        .await;
    assert_eq!(release.status, StatusCode::FORBIDDEN);
    assert_eq!(app.state().await["holds"][0]["name"], "ops");
}

#[tokio::test]
async fn the_banner_is_on_every_page_while_read_only_and_a_refused_write_says_why() {
    let app = TestApp::start().await;
    let image = app.push_image("team/app", "v1", 1).await;
    let mut browser = Browser::new(&app);

    // Taken from the admin page, with a reason and an expiry.
    let csrf = browser.csrf("/ui/admin").await;
    let page = browser
        .post(
            "/ui/admin/holds",
            &[
                ("csrf", &csrf),
                ("name", "admin"),
                ("reason", "moving disks"),
                ("ttl", "1h"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    app.wait_for_mode("read-only").await;
    for path in [
        "/ui/".to_owned(),
        "/ui/repository?name=team/app".to_owned(),
        format!("/ui/manifest?name=team/app&digest={}", image.digest),
        "/ui/admin".to_owned(),
        "/ui/no-such-page".to_owned(),
    ] {
        let page = browser.get(&path).await;
        assert!(page.body.contains(BANNER), "{path}: {}", page.body);
        assert!(page.body.contains("moving disks"), "{path}");
    }
    let repository = browser.get("/ui/repository?name=team/app").await;
    assert!(
        repository
            .body
            .contains("disabled aria-label=\"Delete tag v1\""),
        "{}",
        repository.body
    );
    assert!(
        repository
            .body
            .contains("Disabled: the registry is read-only (moving disks (admin)).")
    );
    let admin = browser.get("/ui/admin").await;
    assert!(
        admin.body.contains("local admin (web UI) (api)"),
        "{}",
        admin.body
    );

    // Sent anyway, the write is refused by the gate with the read-only message.
    let refused = browser
        .post(
            "/ui/tags/delete",
            &[("csrf", &csrf), ("name", "team/app"), ("tag", "v1")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_read_only_refusal(&refused, "Nothing was changed.");
    let refused = browser
        .post(
            "/ui/tags/delete-matching",
            &[("csrf", &csrf), ("name", "team/app"), ("matching", "v*")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_read_only_refusal(&refused, "Nothing was deleted.");
    assert_eq!(tags_of(&app, "team/app").await, json!(["v1"]));
    let refused = browser.post("/ui/admin/gc", &[("csrf", &csrf)]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);

    let released = browser
        .post(
            "/ui/admin/holds/release",
            &[("csrf", &csrf), ("name", "admin")],
        )
        .await;
    assert_eq!(released.status, StatusCode::SEE_OTHER, "{}", released.body);
    let page = browser.get("/ui/").await;
    assert!(!page.body.contains(BANNER));
    let deleted = browser
        .post(
            "/ui/tags/delete",
            &[("csrf", &csrf), ("name", "team/app"), ("tag", "v1")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    let gc = browser.post("/ui/admin/gc", &[("csrf", &csrf)]).await;
    assert_eq!(gc.status, StatusCode::SEE_OTHER);
    assert!(browser.get("/ui/admin").await.body.contains("Last run"));
}

/// A write the gate refused: the read-only message in the banner's words, on a page of its own
/// (not an error page), saying what became of the write.
fn assert_read_only_refusal(page: &Page, outcome: &str) {
    assert!(
        page.body.contains("<h1>Read-only mode</h1>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Service Unavailable"), "{}", page.body);
    assert!(!page.body.contains("role=\"alert\""), "{}", page.body);
    let refusal = page
        .body
        .find("id=\"read-only-refusal\"")
        .expect("the refusal's notice");
    assert!(page.body[refusal..].contains(BANNER), "{}", page.body);
    assert!(page.body.contains(outcome), "{outcome}: {}", page.body);
}

async fn tags_of(app: &TestApp, repository: &str) -> serde_json::Value {
    let tags: serde_json::Value = app
        .get(&format!("/v2/{repository}/tags/list"))
        .await
        .json()
        .await
        .unwrap();
    tags["tags"].clone()
}

#[tokio::test]
async fn tags_are_deleted_by_filter_and_a_filter_is_required() {
    let app = TestApp::start().await;
    for tag in ["pr-1", "pr-2", "pr-old", "v-old", "v1"] {
        app.push_image("team/app", tag, 1).await;
    }
    // Two tags pushed a month ago.
    let month_ago = wharf_core::time::now_millis() - 30 * 86_400_000;
    let backdated = with_database!(app, |database| sqlx::query(
        "UPDATE tags SET updated_at = $1 WHERE name IN ('pr-old', 'v-old')"
    )
    .bind(month_ago)
    .execute(&database)
    .await
    .unwrap()
    .rows_affected());
    assert_eq!(backdated, 2);
    let mut browser = Browser::new(&app);
    let csrf = browser.csrf("/ui/repository?name=team/app").await;
    let page = browser
        .post(
            "/ui/tags/delete-matching",
            &[("csrf", &csrf), ("name", "team/app")],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = browser
        .post(
            "/ui/tags/delete-matching",
            &[
                ("csrf", &csrf),
                ("name", "team/app"),
                ("older_than_days", "ten"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_eq!(tags_of(&app, "team/app").await.as_array().unwrap().len(), 5);

    // Both filters: matching and older.
    let page = delete_matching(&mut browser, &csrf, "pr-*", "10").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Deleted 1 tag(s)"), "{}", page.body);
    assert_eq!(
        tags_of(&app, "team/app").await,
        json!(["pr-1", "pr-2", "v-old", "v1"])
    );
    let page = delete_matching(&mut browser, &csrf, "pr-*", "").await;
    assert!(page.body.contains("Deleted 2 tag(s)"), "{}", page.body);
    assert_eq!(tags_of(&app, "team/app").await, json!(["v-old", "v1"]));
    let page = delete_matching(&mut browser, &csrf, "", "10").await;
    assert!(page.body.contains("Deleted 1 tag(s)"), "{}", page.body);
    assert_eq!(tags_of(&app, "team/app").await, json!(["v1"]));
    // Nothing is older than forty days, and nothing else matches.
    assert!(
        delete_matching(&mut browser, &csrf, "", "40")
            .await
            .body
            .contains("Deleted 0 tag(s)")
    );
    assert!(
        delete_matching(&mut browser, &csrf, "pr-*", "")
            .await
            .body
            .contains("Deleted 0 tag(s)")
    );
    assert_eq!(tags_of(&app, "team/app").await, json!(["v1"]));
}

async fn delete_matching(browser: &mut Browser, csrf: &str, matching: &str, days: &str) -> Page {
    browser
        .post(
            "/ui/tags/delete-matching",
            &[
                ("csrf", csrf),
                ("name", "team/app"),
                ("matching", matching),
                ("older_than_days", days),
            ],
        )
        .await
}

#[tokio::test]
async fn a_reader_browses_but_has_no_delete_control_and_no_deletion() {
    let app = TestApp::start_with_auth(|_| {}).await;
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/users",
            json!({ "name": "reader", "password": "reader-password-1234" }),
        ),
        (
            Method::POST,
            "/api/v1/organizations",
            json!({ "name": "acme" }),
        ),
        (
            Method::PUT,
            "/api/v1/organizations/acme/teams/readers",
            json!({ "role": "read" }),
        ),
        (
            Method::PUT,
            "/api/v1/organizations/acme/teams/readers/members/reader",
            json!({}),
        ),
    ] {
        let response = app.request(method, path).json(&body).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    app.push_image("acme/app", "v1", 1).await;
    let mut browser = Browser::new(&app);
    browser.sign_in("reader", "reader-password-1234").await;
    let page = browser.get("/ui/repository?name=acme/app").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("podman pull"), "{}", page.body);
    assert!(!page.body.contains("Delete tag v1"), "{}", page.body);
    assert!(
        !page.body.contains("Delete tags by filter"),
        "{}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    let refused = browser
        .post(
            "/ui/tags/delete",
            &[("csrf", &csrf), ("name", "acme/app"), ("tag", "v1")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let refused = browser
        .post(
            "/ui/tags/delete-matching",
            &[("csrf", &csrf), ("name", "acme/app"), ("matching", "*")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(tags_of(&app, "acme/app").await, json!(["v1"]));
}

#[tokio::test]
async fn the_admin_page_follows_a_drain_and_names_each_replica() {
    let app = TestApp::start_with(|c| {
        c.drain.push_grace = HumanDuration(Duration::from_millis(300));
    })
    .await;
    let session = app.open_upload("team/app").await;
    let (body, request_body) = HeldBody::new();
    let patch = tokio::spawn(
        app.request(Method::PATCH, &session)
            .body(request_body)
            .send(),
    );
    body.send(b"the first bytes of a layer").await;
    app.wait_for_writes_in_flight(1).await;
    app.hold_read_only("backup", "nightly backup").await;

    let mut browser = Browser::new(&app);
    let admin = browser.get("/ui/admin").await;
    assert_eq!(admin.status, StatusCode::OK);
    assert!(
        admin.body.contains("id=\"live-mode\">draining<"),
        "{}",
        admin.body
    );
    assert!(
        admin.body.contains("id=\"live-replicas\">0/1<"),
        "{}",
        admin.body
    );
    assert!(
        admin.body.contains(
            "id=\"live-progress\">1 write in flight (pushes to team/app), 1 upload open; \
             read-only on 0/1 replicas<"
        ),
        "{}",
        admin.body
    );
    let state = app.state().await;
    let replica = state["replicas"][0]["name"].as_str().unwrap();
    assert!(
        admin.body.contains(&format!("{replica} (this one)")),
        "{}",
        admin.body
    );
    // The live refresh reads the same report as the admin API.
    let live = browser.get("/ui/admin/state.json").await;
    let live: serde_json::Value = serde_json::from_str(&live.body).unwrap();
    assert_eq!(live["progress"], state["progress"]);
    assert_eq!(live["replicas_read_only"], "0/1");

    // The chunk ends; the push pauses past its grace and is cut off, and read-only follows.
    body.finish();
    assert_eq!(patch.await.unwrap().unwrap().status(), StatusCode::ACCEPTED);
    app.wait_for_mode("read-only").await;
    let admin = browser.get("/ui/admin").await;
    assert!(
        admin.body.contains("id=\"live-mode\">read-only<"),
        "{}",
        admin.body
    );
    assert!(
        admin.body.contains("id=\"live-replicas\">1/1<"),
        "{}",
        admin.body
    );
    assert!(admin.body.contains("id=\"live-progress\">none under way<"));
    assert!(
        admin.body.contains("0 push(es) completed, 1 cut off"),
        "{}",
        admin.body
    );
}

#[tokio::test]
async fn a_browser_asking_for_the_root_is_sent_to_the_ui() {
    let app = TestApp::start().await;
    let mut browser = Browser::new(&app);
    let request = browser
        .http
        .get(format!("{}/", app.url))
        .header(header::ACCEPT, "text/html,application/xhtml+xml");
    let page = browser.send(request).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/ui/"));
    assert_eq!(app.get("/").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v2/").await.status(), StatusCode::OK);
    let page = browser.get("/ui/?sort=sideways").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = browser.get("/ui/repository?name=..%2F..%2Fetc").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = browser.get("/ui/manifest?name=team/app&digest=nope").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_admin_page_shows_the_last_garbage_collection_whoever_ran_it() {
    let app = TestApp::start().await;
    let mut browser = Browser::new(&app);
    let admin = browser.get("/ui/admin").await;
    assert!(
        admin.body.contains("Garbage collection has not run yet."),
        "{}",
        admin.body
    );
    // Run through the admin API, as `wharf gc` or a cron job would: the page shows it.
    let response = app
        .request(Method::POST, "/api/v1/gc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let replica = app.state().await["replicas"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = browser.get("/ui/admin").await;
    let at = admin.body.find("id=\"last-gc\"").expect("the last run");
    let line = &admin.body[at..at + admin.body[at..].find("</p>").unwrap()];
    assert!(
        line.contains(&format!(" on {replica}: deleted 0 blob(s)")),
        "{line}"
    );
}
