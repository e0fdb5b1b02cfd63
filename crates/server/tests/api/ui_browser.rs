//! The web UI in a real browser (Debian's chromium, headless; see `webdriver.rs`): the
//! administrator's scenario of the issue with a tag pushed by skopeo, and every page at phone
//! width with labels, headings, keyboard use and contrast checked in the rendered page. With
//! `WHARF_TEST_SCREENSHOTS=DIR` the main pages are saved there as PNG (`docs/ui/` holds the ones
//! `docs/ui.md` shows).

use serde_json::{Value, json};

use crate::app::{ADMIN_PASSWORD, TestApp};
use crate::webdriver::Browser;

const BANNER: &str = "Wharf is currently in read-only mode. Pulls and other read-only operations will succeed but all other operations are currently suspended.";

/// Copies `from` to `to` in the registry with skopeo, as a client outside the process does.
/// Run on a blocking thread: the test's runtime serves the registry meanwhile.
async fn skopeo_copy(app: &TestApp, from: &str, to: &str) {
    let host = app.url.trim_start_matches("http://").to_owned();
    let (from, to) = (
        format!("docker://{host}/{from}"),
        format!("docker://{host}/{to}"),
    );
    let credentials = format!("admin:{ADMIN_PASSWORD}");
    let copied = tokio::task::spawn_blocking(move || {
        std::process::Command::new("skopeo")
            .args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--src-creds",
                &credentials,
                "--dest-creds",
                &credentials,
                &from,
                &to,
            ])
            .output()
            .expect("skopeo is missing: install it (apt-get install -y skopeo); scripts/test does")
    })
    .await
    .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
}

/// Signs in through the form, as a person does.
async fn sign_in(browser: &Browser, app: &TestApp, user: &str, password: &str) {
    browser.go(&format!("{}/ui/sign-in", app.url)).await;
    browser.type_into("#username", user).await;
    browser.type_into("#password", password).await;
    browser.click("form[action='/ui/sign-in'] button").await;
    browser
        .text_until("signed in", |text| {
            text.contains(&format!("Signed in as {user}"))
        })
        .await;
}

#[tokio::test]
async fn an_administrator_holds_the_registry_read_only_and_deletes_a_tag_in_a_browser() {
    let app = TestApp::start_with_auth(|_| {}).await;
    app.push_image("team/app", "v1", 2).await;
    app.push_image("team/tools", "1.0", 1).await;
    // The tag the scenario browses to is pushed by skopeo (copied from v1 in the registry).
    skopeo_copy(&app, "team/app:v1", "team/app:from-skopeo").await;
    let host = app.url.trim_start_matches("http://").to_owned();

    let browser = Browser::start(1100, 900).await;
    let ui = format!("{}/ui", app.url);
    browser.go(&format!("{ui}/sign-in")).await;
    browser.screenshot("sign-in").await;
    sign_in(&browser, &app, "admin", ADMIN_PASSWORD).await;
    let home = browser.text().await;
    assert!(
        home.contains("team/app") && home.contains("team/tools"),
        "{home}"
    );
    browser.screenshot("repositories").await;

    browser
        .click("a[href='/ui/repository?name=team%2Fapp']")
        .await;
    browser
        .text_until("the skopeo tag listed", |t| t.contains("from-skopeo"))
        .await;
    browser.screenshot("repository").await;
    // The pull command of the first tag (from-skopeo, in name order), copied with its button.
    browser.click("button[data-copy='pull-0']").await;
    let copied = browser
        .script(
            "var field = document.getElementById('pull-0');
             return [field.value, document.activeElement === field,
                     field.selectionEnd - field.selectionStart,
                     document.querySelector(\"button[data-copy='pull-0']\").textContent]",
        )
        .await;
    let command = format!("podman pull {host}/team/app:from-skopeo");
    assert_eq!(copied, json!([command, true, command.len(), "Copied"]));
    browser.click("td.mono a").await;
    browser
        .text_until("the manifest page", |t| t.contains("Layers"))
        .await;
    browser.screenshot("manifest").await;

    // A hold from the administration page: the banner on every page, deletion disabled.
    browser.go(&format!("{ui}/admin")).await;
    browser.type_into("#hold-reason", "disk replacement").await;
    browser.type_into("#hold-ttl", "2h").await;
    browser.click("form[action='/ui/admin/holds'] button").await;
    app.wait_for_mode("read-only").await;
    browser.go(&format!("{ui}/admin")).await;
    browser.screenshot("admin-read-only").await;
    for page in ["/", "/repository?name=team/app", "/admin", "/sign-in"] {
        browser.go(&format!("{ui}{page}")).await;
        let text = browser.text().await;
        assert!(text.contains(BANNER), "{page}: {text}");
        assert!(text.contains("disk replacement"), "{page}");
    }
    browser.go(&format!("{ui}/repository?name=team/app")).await;
    assert!(!browser.enabled("button[aria-label='Delete tag v1']").await);
    assert!(
        browser
            .text()
            .await
            .contains("Disabled: the registry is read-only")
    );
    browser.screenshot("repository-read-only").await;

    browser.go(&format!("{ui}/admin")).await;
    browser
        .click("button[aria-label='Release hold admin']")
        .await;
    app.wait_for_mode("read-write").await;
    browser.go(&format!("{ui}/repository?name=team/app")).await;
    assert!(!browser.text().await.contains(BANNER));
    assert!(browser.enabled("button[aria-label='Delete tag v1']").await);
    browser.click("button[aria-label='Delete tag v1']").await;
    // The page after the deletion lists from-skopeo alone.
    browser
        .text_until("v1 gone from the page", |t| {
            t.contains("from-skopeo") && !t.lines().any(|line| line.starts_with("v1\t"))
        })
        .await;
    let tags: Value = app
        .get("/v2/team/app/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["from-skopeo"]));
}

/// Checks run in the rendered page: what overflows a phone's width, controls without a label,
/// the headings, and text whose contrast with its background is under WCAG AA's 4.5:1.
const PAGE_CHECKS: &str = r##"
function luminance(rgb) {
  var c = rgb.match(/[\d.]+/g).slice(0, 3).map(function (v) {
    v = v / 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
}
function background(element) {
  for (var e = element; e; e = e.parentElement) {
    var color = getComputedStyle(e).backgroundColor;
    var alpha = color.match(/[\d.]+/g);
    if (alpha && (alpha.length < 4 || Number(alpha[3]) > 0.5)) { return color; }
  }
  return "rgb(255, 255, 255)";
}
var width = document.documentElement.clientWidth;
// A data table may scroll sideways inside its own box (WCAG's reflow criterion exempts
// tables); nothing else may reach past the screen's edge.
function scrolledWithin(e) {
  for (var p = e.parentNode; p && p !== document.body; p = p.parentNode) {
    var box = p.getBoundingClientRect();
    if (/auto|scroll/.test(getComputedStyle(p).overflowX) && box.left >= -1 && box.right <= width + 1) {
      return true;
    }
  }
  return false;
}
var overflowing = [];
document.querySelectorAll("body *").forEach(function (e) {
  var box = e.getBoundingClientRect();
  if (box.width > 0 && (box.right > width + 1 || box.left < -1) && !scrolledWithin(e)) {
    overflowing.push(e.tagName + (e.id ? "#" + e.id : "") + " " + Math.round(box.left) + ".." + Math.round(box.right));
  }
});
// Text wider than its box (a long name that does not wrap) overflows without the box.
var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (var t = walker.nextNode(); t; t = walker.nextNode()) {
  var range = document.createRange();
  range.selectNodeContents(t);
  var r = range.getBoundingClientRect();
  if (r.width > 0 && r.right > width + 1 && !scrolledWithin(t)) {
    overflowing.push("text '" + t.textContent.trim().slice(0, 40) + "' " + Math.round(r.left) + ".." + Math.round(r.right));
  }
}
var unlabelled = [];
document.querySelectorAll("input, select, textarea").forEach(function (e) {
  if (e.type === "hidden") { return; }
  var named = (e.id && document.querySelector("label[for='" + e.id + "']")) || e.closest("label")
    || e.getAttribute("aria-label");
  if (!named) { unlabelled.push(e.outerHTML); }
});
document.querySelectorAll("button").forEach(function (e) {
  if (!e.textContent.trim() && !e.getAttribute("aria-label")) { unlabelled.push(e.outerHTML); }
});
var faint = [];
document.querySelectorAll("body *").forEach(function (e) {
  var own = Array.prototype.some.call(e.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim(); });
  if (!own || e.getClientRects().length === 0) { return; }
  var a = luminance(getComputedStyle(e).color), b = luminance(background(e));
  var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) { faint.push(e.tagName + " '" + e.textContent.trim().slice(0, 30) + "' " + ratio.toFixed(2)); }
});
return {
  width: width,
  scroll_width: document.documentElement.scrollWidth,
  overflowing: overflowing.slice(0, 5),
  unlabelled: unlabelled,
  faint: faint,
  h1: document.querySelectorAll("h1").length,
  lang: document.documentElement.lang,
  title: document.title,
};
"##;

#[tokio::test]
async fn every_page_fits_a_phone_and_has_labels_headings_and_contrast() {
    let app = TestApp::start_with_auth(|_| {}).await;
    let image = app
        .push_image(
            "team/a-rather-long-repository-name-for-a-phone",
            "v1.2.3-with-a-long-tag",
            2,
        )
        .await;
    app.hold_read_only("ops", "storage migration, back at noon")
        .await;
    let browser = Browser::start(375, 740).await;
    let ui = format!("{}/ui", app.url);

    // The keyboard alone signs in: the first Tab reaches the user name (through the header's
    // links), typing fills the focused fields, Enter submits.
    browser.go(&format!("{ui}/sign-in")).await;
    let mut tabs = 0;
    loop {
        browser.keys("\u{E004}").await;
        tabs += 1;
        let focused = browser.script("return document.activeElement.id").await;
        if focused == "username" {
            break;
        }
        assert!(tabs < 10, "Tab never reached the user name field");
    }
    browser.keys("admin\u{E004}").await;
    browser.keys(ADMIN_PASSWORD).await;
    browser.keys("\u{E007}").await;
    browser
        .text_until("signed in with the keyboard", |t| {
            t.contains("Signed in as admin")
        })
        .await;

    let repository = "team/a-rather-long-repository-name-for-a-phone";
    for (page, screenshot) in [
        ("/".to_owned(), Some("phone-repositories")),
        (
            format!("/repository?name={repository}"),
            Some("phone-repository"),
        ),
        (
            format!("/manifest?name={repository}&digest={}", image.digest),
            None,
        ),
        ("/admin".to_owned(), Some("phone-admin")),
        ("/no-such-page".to_owned(), None),
    ] {
        browser.go(&format!("{ui}{page}")).await;
        let checks = browser.script(PAGE_CHECKS).await;
        assert!(
            checks["width"].as_u64().unwrap() <= 400,
            "the window is not phone-sized: {checks}"
        );
        assert!(
            checks["scroll_width"] == checks["width"] && checks["overflowing"] == json!([]),
            "{page} overflows a phone's width: {checks}"
        );
        assert_eq!(checks["unlabelled"], json!([]), "{page}: {checks}");
        assert_eq!(checks["faint"], json!([]), "{page}: {checks}");
        assert_eq!(checks["h1"], 1, "{page}: one main heading");
        assert_eq!(checks["lang"], "en");
        assert!(checks["title"].as_str().unwrap().ends_with(" · Wharf"));
        if let Some(name) = screenshot {
            browser.screenshot(name).await;
        }
    }
}
