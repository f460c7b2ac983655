//! Test helpers: a sandbox served on a loopback port, the sandbox consent page driven over HTTP, and a
//! minimal HTML form parser shared with the oidc-provider conformance test.

use std::sync::Arc;
use std::time::Duration;

use linkvault_domain::{Clock, SystemClock};
use linkvault_integrations::Catalog;
use linkvault_sandbox::SandboxConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

/// Every test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

pub const REDIRECT_URI: &str = "http://127.0.0.1:9/linkvault/callback";

pub struct TestServer {
    pub origin: String,
    handle: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Serves `router` on 127.0.0.1, port 0.
pub async fn serve(router: axum::Router) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    TestServer { origin, handle }
}

pub struct TestSandbox {
    /// Kept alive for the test; aborted on drop.
    _server: TestServer,
    pub base_url: String,
    pub catalog: Catalog,
}

/// The sandbox nested at `/sandbox` (as `serve --sandbox` does) and the embedded catalog pointed at it.
pub async fn spawn_sandbox(configure: impl FnOnce(SandboxConfig) -> SandboxConfig) -> TestSandbox {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let base_url = format!("{origin}/sandbox");
    let config = configure(SandboxConfig::new(base_url.clone()));
    let app = axum::Router::new().nest("/sandbox", linkvault_sandbox::router(config));
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut catalog = Catalog::embedded();
    catalog.point_at_sandbox(&base_url).unwrap();
    TestSandbox { _server: TestServer { origin, handle }, base_url, catalog }
}

pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A browser stand-in: keeps cookies, never follows redirects by itself.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[derive(Debug, Clone)]
pub struct HtmlForm {
    pub action: String,
    pub fields: Vec<(String, String)>,
}

fn decode_entities(raw: &str) -> String {
    raw.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let mut search = 0;
    while let Some(pos) = tag[search..].find(&needle) {
        let start = search + pos;
        // Whole attribute name only (not `data-name=`).
        let preceded_ok = start == 0 || tag.as_bytes()[start - 1].is_ascii_whitespace();
        let value_start = start + needle.len();
        let end = value_start + tag[value_start..].find('"')?;
        if preceded_ok {
            return Some(decode_entities(&tag[value_start..end]));
        }
        search = end;
    }
    None
}

/// The first `<form>` of a page: its action and its named inputs and buttons (hidden values kept).
pub fn parse_form(html: &str) -> Option<HtmlForm> {
    let start = html.find("<form")?;
    let end = start + html[start..].find("</form>")?;
    let form = &html[start..end];
    let open_end = form.find('>')?;
    let action = attr(&form[..open_end], "action").unwrap_or_default();
    let mut fields = Vec::new();
    let mut rest = &form[open_end..];
    while let Some(pos) = rest.find("<input") {
        let tag_end = pos + rest[pos..].find('>')?;
        let tag = &rest[pos..tag_end];
        if let Some(name) = attr(tag, "name") {
            fields.push((name, attr(tag, "value").unwrap_or_default()));
        }
        rest = &rest[tag_end..];
    }
    Some(HtmlForm { action, fields })
}

/// Absolute URL of a Location header or form action relative to `base`.
pub fn resolve(base: &Url, reference: &str) -> Url {
    base.join(reference).unwrap()
}

/// What the sandbox consent page answered to a sign-in.
pub enum ConsentResult {
    /// Redirected to the client: the query pairs of the redirect.
    Redirected(Vec<(String, String)>),
    /// The page again (e.g. wrong password), with its status.
    Page(u16, String),
}

/// Opens the sandbox consent page, fills the sign-in form, submits it with `decision`.
pub async fn sandbox_consent(authorize_url: &Url, username: &str, password: &str, decision: &str) -> ConsentResult {
    let http = browser();
    let page = http.get(authorize_url.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200, "consent page");
    let html = page.text().await.unwrap();
    let form = parse_form(&html).expect("a sign-in form");
    let mut fields: Vec<(String, String)> =
        form.fields.into_iter().filter(|(name, _)| name != "username" && name != "password").collect();
    fields.push(("username".to_owned(), username.to_owned()));
    fields.push(("password".to_owned(), password.to_owned()));
    fields.push(("decision".to_owned(), decision.to_owned()));
    let response = http.post(resolve(authorize_url, &form.action)).form(&fields).send().await.unwrap();
    if response.status().is_redirection() {
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let url = Url::parse(&location).unwrap();
        assert!(location.starts_with(REDIRECT_URI), "redirected to the client: {location}");
        ConsentResult::Redirected(url.query_pairs().into_owned().collect())
    } else {
        ConsentResult::Page(response.status().as_u16(), response.text().await.unwrap())
    }
}

pub fn query_value(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// POST JSON to the sandbox admin API.
pub async fn admin_post(base_url: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let response = reqwest::Client::new().post(format!("{base_url}/admin/{path}")).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "admin {path}: {}", response.status());
    response.json().await.unwrap()
}

pub async fn admin_get(base_url: &str, path: &str) -> serde_json::Value {
    reqwest::Client::new().get(format!("{base_url}/admin/{path}")).send().await.unwrap().json().await.unwrap()
}

#[test]
fn parse_form_reads_actions_and_hidden_fields() {
    let html = r#"<html><form autocomplete="off" action="/interaction/a&amp;b" method="post">
      <input type="hidden" name="prompt" value="login"/><input required type="text" name="login" placeholder="x">
      <input type="password" name="password"></form></html>"#;
    let form = parse_form(html).unwrap();
    assert_eq!(form.action, "/interaction/a&b");
    assert_eq!(
        form.fields,
        vec![
            ("prompt".to_owned(), "login".to_owned()),
            ("login".to_owned(), String::new()),
            ("password".to_owned(), String::new())
        ]
    );
}
