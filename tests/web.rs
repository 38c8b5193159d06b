//! The web page through real HTTP, as a browser's forms use it: redirects to
//! sign in, sign-in refusals, the role and CSRF checks of every form, the
//! security headers, resolving one conflict with a typed value and several in
//! bulk, dead letters, health, and the policy editor's refusals. The browser
//! itself is driven in `browser.rs`.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION};

use crate::support::{People, World, served_with_a_conflict};

const ADA: &str = "ada@example.com";
const GRACE: &str = "grace@example.com";

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A signed-in browser, as far as HTTP goes: its cookie and the CSRF token of its pages.
struct Page {
    base: String,
    cookie: String,
    csrf: String,
    http: reqwest::Client,
}

impl Page {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Post a form; the session's CSRF token is added unless `csrf` is a field already.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String, String) {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        if !fields.iter().any(|(name, _)| *name == "csrf") {
            form.push(("csrf", &self.csrf));
        }
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (response.status(), location, response.text().await.unwrap())
    }
}

async fn sign_in(people: &People, name: &str) -> Page {
    let http = client();
    let response = http
        .post(format!("{}/sign-in", people.base))
        .form(&[
            ("name", name),
            ("password", people.passwords[name].as_str()),
            ("next", "/health"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{name} signs in");
    assert_eq!(response.headers()[LOCATION], "/health");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut page = Page {
        base: people.base.clone(),
        cookie,
        csrf: String::new(),
        http,
    };
    let (status, html) = page.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).expect("a CSRF field on every page") + marker.len();
    page.csrf = html[at..at + html[at..].find('"').unwrap()].to_string();
    page
}

async fn open_conflicts(people: &People) -> Vec<tandem::store::ConflictRow> {
    people
        .engine
        .store()
        .call(|s| s.conflicts(false))
        .await
        .unwrap()
}

#[tokio::test]
async fn pages_send_anonymous_visitors_to_sign_in_and_back() {
    let (_world, people, _shutdown) = served_with_a_conflict().await;
    let http = client();
    for path in [
        "/",
        "/conflicts?status=all",
        "/conflicts/1",
        "/deadletters",
        "/audit",
        "/health",
        "/policies",
        "/policies/hubspot-mailchimp",
    ] {
        let response = http
            .get(format!("{}{path}", people.base))
            .send()
            .await
            .unwrap();
        let location = response.headers()[LOCATION].to_str().unwrap().to_string();
        if path == "/" {
            assert_eq!(location, "/conflicts");
            continue;
        }
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let back: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
        assert_eq!(location, format!("/sign-in?next={back}"), "{path}");
    }
    // Liveness and readiness need no session.
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = http
            .get(format!("{}{path}", people.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.text().await.unwrap(), body);
    }
    // A form posted without a session changes nothing and asks to sign in.
    let response = http
        .post(format!("{}/conflicts/1/resolve", people.base))
        .form(&[("take", "left"), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(open_conflicts(&people).await.len(), 1);

    let response = http
        .get(format!("{}/sign-in?next=/conflicts", people.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let html = response.text().await.unwrap();
    assert!(
        html.contains("name=\"next\" value=\"/conflicts\""),
        "{html}"
    );
}

#[tokio::test]
async fn sign_in_refuses_wrong_passwords_other_sites_and_other_hosts_as_next() {
    let (_world, people, _shutdown) = served_with_a_conflict().await;
    let http = client();
    let post = |fields: Vec<(&'static str, String)>, origin: Option<String>| {
        let mut request = http.post(format!("{}/sign-in", people.base)).form(&fields);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let wrong = post(
        vec![("name", "support".into()), ("password", "guess".into())],
        None,
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    let html = wrong.text().await.unwrap();
    assert!(html.contains("That name and password do not match."));
    assert!(html.contains("value=\"support\""), "the name is kept");

    let password = people.passwords["support"].clone();
    let elsewhere = post(
        vec![("name", "support".into()), ("password", password.clone())],
        Some("https://evil.example".into()),
    )
    .await
    .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    assert!(elsewhere.headers().get("set-cookie").is_none());

    let away = post(
        vec![
            ("name", "support".into()),
            ("password", password),
            ("next", "//evil.example/x".into()),
        ],
        Some("http://evil.example".into()),
    )
    .await
    .unwrap();
    assert_eq!(away.status(), StatusCode::FORBIDDEN);

    let home = post(
        vec![
            ("name", "support".into()),
            ("password", people.passwords["support"].clone()),
            ("next", "https://evil.example/x".into()),
        ],
        Some(people.base.clone()),
    )
    .await
    .unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(home.headers()[LOCATION], "/conflicts");

    // The same rate limit as the API's: five tries a minute per name.
    for _ in 0..5 {
        let _ = post(
            vec![("name", "viewer".into()), ("password", "guess".into())],
            None,
        )
        .await
        .unwrap();
    }
    let limited = post(
        vec![("name", "viewer".into()), ("password", "guess".into())],
        None,
    )
    .await
    .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_some());
    assert!(limited.text().await.unwrap().contains("Too many attempts"));
}

/// A form's path, its fields, and the least role that may post it.
type Form<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test]
async fn every_form_checks_the_role_and_the_csrf_token() {
    let (_world, people, _shutdown) = served_with_a_conflict().await;
    let id = open_conflicts(&people).await[0].id.to_string();
    let resolve = format!("/conflicts/{id}/resolve");
    let policy = std::fs::read_to_string(&people.engine.policies()[0].file).unwrap();
    let forms: Vec<Form> = vec![
        (resolve.clone(), vec![("take", "left")], "support"),
        (
            "/conflicts/resolve".into(),
            vec![("take", "left"), ("scope", "filter"), ("field", "none")],
            "support",
        ),
        ("/deadletters/999/retry".into(), vec![], "support"),
        ("/deadletters/999/discard".into(), vec![], "admin"),
        (
            "/policies/hubspot-mailchimp".into(),
            vec![("action", "check"), ("source", policy.as_str())],
            "admin",
        ),
    ];
    let rank = |role: &str| {
        ["viewer", "support", "admin"]
            .iter()
            .position(|r| *r == role)
    };
    for name in ["viewer", "support", "admin"] {
        let page = sign_in(&people, name).await;
        for (path, fields, least) in &forms {
            let mut forged = fields.clone();
            forged.push(("csrf", "not-the-token"));
            let (status, _, html) = page.post(path, &forged).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{name} {path} forged");
            assert!(html.contains("reload the page"), "{html}");

            let (status, _, _) = page.post(path, fields).await;
            if rank(name) < rank(least) {
                assert_eq!(status, StatusCode::FORBIDDEN, "{name} {path}");
            } else {
                assert_ne!(status, StatusCode::FORBIDDEN, "{name} {path}");
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{name} {path}");
            }
        }
        // What a page offers follows the role too.
        let (_, detail) = page.get(&format!("/conflicts/{id}")).await;
        let open = open_conflicts(&people)
            .await
            .iter()
            .any(|c| c.id.to_string() == id);
        assert_eq!(
            detail.contains("id=\"take-left\""),
            name != "viewer" && open,
            "{name}"
        );
        let (_, editor) = page.get("/policies/hubspot-mailchimp").await;
        assert_eq!(editor.contains("id=\"save\""), name == "admin", "{name}");
        assert_eq!(editor.contains(" readonly"), name != "admin", "{name}");
    }
}

#[tokio::test]
async fn a_typed_value_and_a_bulk_choice_reach_both_systems() {
    let (world, people, _shutdown) = served_with_a_conflict().await;
    let page = sign_in(&people, "support").await;
    let ada = open_conflicts(&people).await[0].id;

    // A choice that is not one changes nothing and says why on the conflict's page.
    let (status, _, html) = page
        .post(&format!("/conflicts/{ada}/resolve"), &[("take", "both")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("`both` is not a choice"), "{html}");
    assert_eq!(open_conflicts(&people).await.len(), 1);

    let (status, location, _) = page
        .post(
            &format!("/conflicts/{ada}/resolve"),
            &[("take", "value"), ("value", "Analytical Engines Ltd")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, format!("/conflicts?done=resolved-{ada}"));
    let (_, queue) = page.get(&location).await;
    assert!(queue.contains(&format!("Conflict #{ada} resolved")));
    world.pass(&people.engine).await;
    for value in [
        world.hubspot_value(ADA, "company"),
        world.mailchimp_value(ADA, "COMPANY"),
    ] {
        assert_eq!(value.as_deref(), Some("Analytical Engines Ltd"));
    }
    let (status, _, _) = page
        .post(&format!("/conflicts/{ada}/resolve"), &[("take", "left")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "resolved already");

    // Two more conflicts. Resolving one from its page leads to the next.
    both_edit(&world, ADA, "Babbage", "Lovelace Ltd").await;
    both_edit(&world, GRACE, "US Navy", "Harvard").await;
    let report = world.pass(&people.engine).await;
    assert_eq!(report.conflicts_opened, 2, "{report:?}");
    let open = open_conflicts(&people).await;
    let (ada, grace) = (open[0].id, open[1].id);
    assert_eq!(open[0].key, ADA);
    let (_, queue) = page.get("/conflicts").await;
    assert!(queue.contains("<mark>Lovelace Ltd</mark>"), "{queue}");
    let (_, detail) = page.get(&format!("/conflicts/{grace}")).await;
    assert!(
        detail.contains(&format!("href=\"/conflicts/{ada}\" data-key=\"n\"")),
        "the last one's next is the first: {detail}"
    );
    let (status, location, _) = page
        .post(&format!("/conflicts/{ada}/resolve"), &[("take", "left")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, format!("/conflicts/{grace}?done=resolved-{ada}"));

    // Bulk: nothing ticked is refused; a ticked conflict that is settled already is named.
    let (status, _, _) = page
        .post(
            "/conflicts/resolve",
            &[("take", "left"), ("scope", "selected")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "nothing ticked");
    let (status, location, _) = page
        .post(
            "/conflicts/resolve",
            &[
                ("take", "right"),
                ("scope", "selected"),
                ("id", &ada.to_string()),
                ("id", &grace.to_string()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/conflicts?done=bulk-1-1");
    let (_, queue) = page.get(&location).await;
    assert!(
        queue.contains("1 conflict resolved; 1 left open"),
        "{queue}"
    );
    assert!(open_conflicts(&people).await.is_empty());
    world.pass(&people.engine).await;
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Babbage")
    );
    assert_eq!(
        world.hubspot_value(GRACE, "company").as_deref(),
        Some("Harvard")
    );
    let (_, resolved) = page.get(&format!("/conflicts/{grace}")).await;
    assert!(resolved.contains("by support"), "{resolved}");

    // Every open conflict a filter matches, blank filter fields ignored.
    both_edit(&world, GRACE, "Navy Yard", "Yale").await;
    both_edit(&world, ADA, "Babbage Ltd", "Engines").await;
    let report = world.pass(&people.engine).await;
    assert_eq!(report.conflicts_opened, 2, "{report:?}");
    let (status, location, _) = page
        .post(
            "/conflicts/resolve",
            &[
                ("take", "right"),
                ("scope", "filter"),
                ("search", "grace"),
                ("field", "company"),
                ("pair", ""),
                ("rule", ""),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/conflicts?done=bulk-1-0");
    let open = open_conflicts(&people).await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].key, ADA, "Ada's conflict does not match the filter");
    world.pass(&people.engine).await;
    assert_eq!(
        world.hubspot_value(GRACE, "company").as_deref(),
        Some("Yale")
    );
}

async fn both_edit(world: &World, email: &str, hubspot: &str, mailchimp: &str) {
    world.later();
    world.hubspot.edit(email, &[("company", hubspot)]);
    world.mailchimp.edit(email, &[("COMPANY", mailchimp)]);
}

#[tokio::test]
async fn health_dead_letters_and_the_policy_editor_say_what_is_wrong() {
    let (world, people, _shutdown) = served_with_a_conflict().await;
    let admin = sign_in(&people, "admin").await;
    let (status, health) = admin.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert!(health.contains("hubspot-mailchimp"));
    assert!(
        health.contains("<dt>Linked</dt><dd>2</dd>"),
        "two linked records: {health}"
    );
    assert!(health.contains("<a href=\"/conflicts?pair=hubspot-mailchimp\">1</a>"));
    assert!(
        health.contains("<td class=\"circuit-closed\">closed</td>"),
        "each connector's circuit breaker: {health}"
    );
    assert!(health.contains("Webhooks today"));

    let (_, letters) = admin.get("/deadletters").await;
    assert!(letters.contains("None."));
    let (status, _, html) = admin.post("/deadletters/12345/retry", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("no dead letter #12345"));

    // A policy with a typo: 422, the problem at its line, the file untouched.
    let file = people.engine.policies()[0].file.clone();
    let shipped = std::fs::read_to_string(&file).unwrap();
    let typo = shipped.replacen("rule = \"manual\"", "rule = \"manaul\"", 1);
    let line = typo.lines().position(|l| l.contains("manaul")).unwrap() + 1;
    let (status, _, html) = admin
        .post(
            "/policies/hubspot-mailchimp",
            &[("action", "save"), ("source", &typo)],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains(&format!("policies/hubspot-mailchimp.toml:{line}:")),
        "{html}"
    );
    assert!(html.contains(&format!(
        "id=\"line-{line}\" value=\"{line}\" class=\"bad\""
    )));
    assert!(html.contains("manaul"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), shipped);
    // Browsers send CRLF from a text area; the check passes and the file keeps LF.
    let crlf = shipped.replace('\n', "\r\n");
    let (status, _, html) = admin
        .post(
            "/policies/hubspot-mailchimp",
            &[("action", "check"), ("source", &crlf)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("It compiles"));
    let (status, _, _) = admin
        .post(
            "/policies/hubspot-mailchimp",
            &[("action", "publish"), ("source", &shipped)],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, location, _) = admin
        .post(
            "/policies/hubspot-mailchimp",
            &[("action", "save"), ("source", &crlf)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/policies/hubspot-mailchimp?done=saved");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), shipped);

    // A save that fails on disk keeps the admin's text on the page.
    std::fs::create_dir(file.with_extension("toml.saving")).unwrap();
    let edited = shipped.replacen("whoever edited last wins", "the later edit wins", 1);
    assert_ne!(edited, shipped);
    let (status, _, html) = admin
        .post(
            "/policies/hubspot-mailchimp",
            &[("action", "save"), ("source", &edited)],
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(html.contains("It could not be saved"), "{html}");
    assert!(html.contains("# Names: the later edit wins."), "{html}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), shipped);
    let _ = world;
}
