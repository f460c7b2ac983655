//! Link's OAuth sign-in is bound to the browser that started it (issue 14, finding 1), on both backends,
//! against the sandbox OAuth server: the page gets a one-time linkvault URL, not the authorize URL; only the
//! Link page's own navigation to it (once) sets the binding cookie; a callback without that cookie, or with
//! another browser's, is refused with a clear page, ends the sign-in as failed and stores no connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Options, TestApp, TestResult, link_post, link_session, link_token_as, spawn_app_with};
use linkvault_storage::testing::Backend;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// A browser of its own: no cookie jar shared with anyone, redirects not followed (the test follows them).
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// `oauth/start` for coinbase in the session `bearer`: the popup URL the page is handed.
async fn start(app: &TestApp, bearer: &str) -> String {
    let started = link_post(app, "/link/api/oauth/start", Some(bearer), json!({"type": "coinbase"})).await;
    assert_eq!(started.code, 200, "{}", started.raw);
    assert!(started.content().get("authorizeUrl").is_none(), "the page must not get the authorize URL");
    let url = started.content()["popupUrl"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/link/oauth/begin?nonce=", app.base)), "{url}");
    url
}

/// The popup's first stop, as the Link page's own navigation makes it: the authorize URL and the cookie.
async fn begin(b: &reqwest::Client, popup_url: &str) -> (String, String) {
    let res = b.get(popup_url).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let set_cookie = res.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/link/oauth", "Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain-http public URL: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    (res.headers().get(LOCATION).unwrap().to_str().unwrap().to_owned(), cookie)
}

/// Approves `authorize_url` at the sandbox's consent page (as any browser can): the callback URL.
async fn approve(b: &reqwest::Client, authorize_url: &str) -> String {
    let url = reqwest::Url::parse(authorize_url).unwrap();
    let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    form.extend(
        [("username", "Mesh"), ("password", "Pass123"), ("decision", "allow")].map(|(k, v)| (k.into(), v.into())),
    );
    let mut action = url.clone();
    action.set_query(None);
    let consent = b.post(action).form(&form).send().await.unwrap();
    consent.headers().get(LOCATION).expect("consent redirects").to_str().unwrap().to_owned()
}

async fn callback(b: &reqwest::Client, url: &str, cookie: Option<&str>) -> (u16, String) {
    let mut req = b.get(url);
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn result(app: &TestApp, bearer: &str) -> Value {
    let answer = link_post(app, "/link/api/oauth/result", Some(bearer), json!({})).await;
    assert_eq!(answer.code, 200, "{}", answer.raw);
    answer.content().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_starting_browser_finishes_an_oauth_sign_in() -> TestResult {
    for backend in Backend::all() {
        eprintln!("on {backend:?}");
        let app = spawn_app_with(backend, Options { sandbox: true, ..Options::default() }).await?;
        let c = &app.client;
        let link = link_token_as(&app, &c.id, &c.write, json!({"userId": "attacker-user"})).await?;
        let bearer = link_session(&app, &link).await;
        let (starter, victim, third) = (browser(), browser(), browser());

        // The attacker starts and takes the begin step in their own browser, then hands the authorize URL on.
        let popup_url = start(&app, &bearer).await;
        let (authorize_url, starter_cookie) = begin(&starter, &popup_url).await;
        let again = starter.get(&popup_url).header("sec-fetch-site", "same-origin").send().await?;
        assert_eq!(again.status().as_u16(), 400, "the begin URL is single use");
        // The victim approves it in another browser: the callback has no binding cookie.
        let landing = approve(&victim, &authorize_url).await;
        assert!(landing.starts_with(&format!("{}/link/oauth/callback?", app.base)), "{landing}");
        let (code, page) = callback(&victim, &landing, None).await;
        assert_eq!(code, 403);
        assert!(page.contains("started in another browser"), "{page}");
        assert!(page.contains("data-status=\"failed\""), "{page}");
        let outcome = result(&app, &bearer).await;
        assert_eq!(outcome["status"], "failed", "{outcome}");
        assert!(outcome["errorMessage"].as_str().unwrap().contains("another browser"), "{outcome}");
        // The state is spent: even the starting browser cannot use it now.
        assert_eq!(callback(&starter, &landing, Some(&starter_cookie)).await.0, 200);
        assert_eq!(result(&app, &bearer).await["status"], "pending", "nothing more completed");
        assert_eq!(app.fresh.store.count_connections().await?, 0, "no connection was made");

        // Another browser's cookie (a binding of its own, under this sign-in's cookie name) does not do.
        let popup_url = start(&app, &bearer).await;
        let (authorize_url, starter_cookie) = begin(&starter, &popup_url).await;
        let (_, third_cookie) = begin(&third, &start(&app, &bearer).await).await;
        let name = starter_cookie.split('=').next().unwrap();
        let forged = format!("{name}={}", third_cookie.split_once('=').unwrap().1);
        let landing = approve(&victim, &authorize_url).await;
        assert_eq!(callback(&victim, &landing, Some(&forged)).await.0, 403);
        assert_eq!(result(&app, &bearer).await["status"], "failed");
        assert_eq!(app.fresh.store.count_connections().await?, 0, "no connection was made");

        // A begin URL opened other than by the Link page's navigation (pasted, clicked in a message) is refused.
        let popup_url = start(&app, &bearer).await;
        for site in ["none", "cross-site", "same-site"] {
            let res = victim.get(&popup_url).header("sec-fetch-site", site).send().await?;
            assert_eq!(res.status().as_u16(), 403, "Sec-Fetch-Site: {site}");
            assert!(res.headers().get(SET_COOKIE).is_none());
        }

        // The starting browser, with its cookie, finishes its sign-in; the cookie is removed.
        let (authorize_url, starter_cookie) = begin(&starter, &popup_url).await;
        let landing = approve(&starter, &authorize_url).await;
        let res = starter.get(&landing).header(COOKIE, &starter_cookie).send().await?;
        assert_eq!(res.status().as_u16(), 200);
        let removal = res.headers().get(SET_COOKIE).unwrap().to_str()?.to_owned();
        assert!(removal.starts_with(&format!("{}=;", starter_cookie.split('=').next().unwrap())), "{removal}");
        assert!(res.text().await?.contains("data-status=\"ok\""));
        let outcome = result(&app, &bearer).await;
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        assert_eq!(app.fresh.store.count_connections().await?, 1);
    }
    Ok(())
}
