//! The JSON API for people, through real HTTP: sign-in and sessions, the full
//! 401/403 matrix by role, CSRF, sign-in rate limits, resolving a conflict
//! until both simulators hold the value, dead letters, audit, policies
//! (validate, preview, save) and status, and the OpenAPI document.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{People, served_with_a_conflict as served};

const ADA: &str = "ada@example.com";

/// A signed-in client: its cookie and CSRF token.
struct Session {
    base: String,
    cookie: String,
    csrf: String,
    http: reqwest::Client,
}

impl Session {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(method, path, body, Some(&self.csrf)).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

async fn sign_in(people: &People, name: &str) -> Session {
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/api/session", people.base))
        .json(&json!({"name": name, "password": people.passwords[name]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{name} signs in");
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            set_cookie.contains(attribute),
            "{attribute} in {set_cookie}"
        );
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"], name);
    Session {
        base: people.base.clone(),
        cookie,
        csrf: body["csrf"].as_str().unwrap().to_string(),
        http,
    }
}

/// Every endpoint that needs a session, with a body where it takes one, and
/// the least role that may call it.
fn endpoints(
    conflict: i64,
    pair: &str,
    policy: &str,
) -> Vec<(Method, String, Option<Value>, &'static str)> {
    let source = json!({ "source": policy });
    vec![
        (Method::GET, "/api/session".into(), None, "viewer"),
        (Method::GET, "/api/status".into(), None, "viewer"),
        (Method::GET, "/api/conflicts".into(), None, "viewer"),
        (
            Method::GET,
            format!("/api/conflicts/{conflict}"),
            None,
            "viewer",
        ),
        (Method::GET, "/api/deadletters".into(), None, "viewer"),
        (Method::GET, "/api/audit".into(), None, "viewer"),
        (Method::GET, "/api/removals".into(), None, "viewer"),
        (
            Method::POST,
            "/api/removals/approve".into(),
            Some(json!({"pair": "no-such-pair"})),
            "admin",
        ),
        (
            Method::POST,
            "/api/removals/cancel".into(),
            Some(json!({"pair": "no-such-pair"})),
            "admin",
        ),
        (Method::GET, "/api/policies".into(), None, "viewer"),
        (Method::GET, format!("/api/policies/{pair}"), None, "viewer"),
        (
            Method::POST,
            "/api/conflicts/resolve".into(),
            Some(json!({"filter": {"field": "no-such-field"}, "resolution": {"take": "left"}})),
            "support",
        ),
        (
            Method::POST,
            "/api/conflicts/999999/resolve".into(),
            Some(json!({"take": "left"})),
            "support",
        ),
        (
            Method::POST,
            "/api/deadletters/999999/retry".into(),
            None,
            "support",
        ),
        (
            Method::POST,
            "/api/deadletters/999999/discard".into(),
            None,
            "admin",
        ),
        (
            Method::POST,
            format!("/api/policies/{pair}/validate"),
            Some(source.clone()),
            "admin",
        ),
        (
            Method::POST,
            format!("/api/policies/{pair}/preview"),
            Some(source.clone()),
            "admin",
        ),
        (
            Method::PUT,
            format!("/api/policies/{pair}"),
            Some(source),
            "admin",
        ),
        (Method::DELETE, "/api/session".into(), None, "viewer"),
    ]
}

fn rank(role: &str) -> u8 {
    match role {
        "viewer" => 0,
        "support" => 1,
        "admin" => 2,
        other => panic!("role {other}"),
    }
}

#[tokio::test]
async fn every_endpoint_refuses_anonymous_callers_and_the_wrong_roles() {
    let (world, people, _shutdown) = served().await;
    let policy_file = world.dir.path().join("policies/hubspot-mailchimp.toml");
    let policy = std::fs::read_to_string(&policy_file).unwrap();
    let conflict = people
        .engine
        .store()
        .call(|s| s.conflicts(false))
        .await
        .unwrap()[0]
        .id;
    let anonymous = reqwest::Client::new();
    for (method, path, body, _) in endpoints(conflict, "hubspot-mailchimp", &policy) {
        let mut request = anonymous.request(method.clone(), format!("{}{path}", people.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "sign in first", "{method} {path}");
    }

    for role in ["viewer", "support", "admin"] {
        // Signing out comes last, as it ends the session.
        let session = sign_in(&people, role).await;
        for (method, path, body, least) in endpoints(conflict, "hubspot-mailchimp", &policy) {
            let (status, answer) = session.call(method.clone(), &path, body).await;
            if rank(role) >= rank(least) {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{role} may {method} {path}: {status} {answer}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} may not {method} {path}: {answer}"
                );
                assert!(
                    answer["error"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("needs the {least} role")),
                    "{answer}"
                );
            }
        }
    }
    // Nothing a refused call asked for happened: the policy file and the conflict are as they were.
    assert_eq!(std::fs::read_to_string(&policy_file).unwrap(), policy);
}

#[tokio::test]
async fn a_change_without_the_sessions_csrf_token_is_refused() {
    let (_world, people, _shutdown) = served().await;
    let session = sign_in(&people, "support").await;
    let id = people
        .engine
        .store()
        .call(|s| s.conflicts(false))
        .await
        .unwrap()[0]
        .id;
    let path = format!("/api/conflicts/{id}/resolve");
    for csrf in [None, Some("not-the-token")] {
        let (status, body) = session
            .call_with(Method::POST, &path, Some(json!({"take": "left"})), csrf)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body["error"].as_str().unwrap().contains("CSRF"), "{body}");
    }
    let still_open = people
        .engine
        .store()
        .call(|s| s.conflicts(false))
        .await
        .unwrap();
    assert_eq!(still_open.len(), 1);
    // Reading needs no token.
    let (status, _) = session
        .call_with(Method::GET, "/api/conflicts", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn sign_in_refuses_wrong_passwords_and_slows_down_guessing() {
    let (_world, people, _shutdown) = served().await;
    let http = reqwest::Client::new();
    let attempt = |name: &'static str, password: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/session", people.base);
        async move {
            http.post(url)
                .json(&json!({"name": name, "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        attempt("nobody", "x").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(attempt("admin", "guess").await);
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        codes,
        [401, 401, 401, 401, 401, 429],
        "five tries a minute per name"
    );
    assert!(statuses[5].headers().get("retry-after").is_some());
    // Another name is not held back by the first one's limit.
    let session = sign_in(&people, "viewer").await;
    let (status, me) = session.call(Method::GET, "/api/session", None).await;
    assert_eq!(
        (status, me["role"].clone()),
        (StatusCode::OK, json!("viewer"))
    );
    // Refusals are audited, with the name tried but never the password.
    let audit = people
        .engine
        .store()
        .call(|s| s.audit_log(100))
        .await
        .unwrap();
    let refused: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "sign_in_refused")
        .collect();
    assert_eq!(refused.len(), 6, "{refused:?}");
    assert!(!serde_json::to_string(&audit).unwrap().contains("guess"));

    // Signing out ends the session.
    let (status, _) = session.call(Method::DELETE, "/api/session", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = session.call(Method::GET, "/api/conflicts", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn support_resolves_a_conflict_and_both_simulators_hold_the_value() {
    let (world, people, _shutdown) = served().await;
    let viewer = sign_in(&people, "viewer").await;
    let (status, page) = viewer
        .call(
            Method::GET,
            "/api/conflicts?search=ADA@&field=company",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1, "{page}");
    let id = page["conflicts"][0]["id"].as_i64().unwrap();
    let (_, detail) = viewer
        .call(Method::GET, &format!("/api/conflicts/{id}"), None)
        .await;
    assert_eq!(detail["left"], "Babbage & Co");
    assert_eq!(detail["right"], "Analytical Engines");
    assert_eq!(detail["base"], json!(["Analytical", "Analytical"]));
    assert_eq!(detail["rule"], "manual");
    assert!(detail["changed_at"][1].is_i64(), "{detail}");
    assert!(
        detail["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "conflict_opened"),
        "{detail}"
    );
    let (status, _) = viewer
        .call(Method::GET, "/api/conflicts?status=sideways", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let support = sign_in(&people, "support").await;
    let (status, row) = support
        .call(
            Method::POST,
            &format!("/api/conflicts/{id}/resolve"),
            Some(json!({"take": "value", "value": "Analytical Engines Ltd"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{row}");
    assert_eq!(row["resolved_by"], "support");
    let (status, again) = support
        .call(
            Method::POST,
            &format!("/api/conflicts/{id}/resolve"),
            Some(json!({"take": "left"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    world.pass(&people.engine).await;
    assert_eq!(
        world.hubspot_value(ADA, "company").as_deref(),
        Some("Analytical Engines Ltd")
    );
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Analytical Engines Ltd")
    );
    let (_, audit) = viewer
        .call(Method::GET, "/api/audit?action=conflict_resolved", None)
        .await;
    assert_eq!(audit[0]["actor"], "support", "{audit}");
    let (_, status) = viewer.call(Method::GET, "/api/status", None).await;
    let pair = &status["pairs"][0];
    assert_eq!(pair["pair"], "hubspot-mailchimp");
    assert_eq!(
        (pair["links"].clone(), pair["open_conflicts"].clone()),
        (json!(2), json!(0))
    );
    assert!(
        pair["connectors"][0]["requests"].as_u64().unwrap() > 0,
        "{status}"
    );
    assert!(pair["connectors"][1]["last_poll"].is_i64(), "{status}");
}

#[tokio::test]
async fn admin_validates_previews_and_saves_policies_and_a_broken_one_is_not_saved() {
    let (world, people, _shutdown) = served().await;
    let file = world.dir.path().join("policies/hubspot-mailchimp.toml");
    let shipped = std::fs::read_to_string(&file).unwrap();
    let admin = sign_in(&people, "admin").await;
    let (status, listed) = admin.call(Method::GET, "/api/policies", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed[0]["source"], shipped.as_str());

    let broken = shipped.replace("rule = \"manual\"", "rule = \"manul\"");
    let line = broken.lines().position(|l| l.contains("manul")).unwrap() + 1;
    for (method, path) in [
        (Method::POST, "/api/policies/hubspot-mailchimp/validate"),
        (Method::POST, "/api/policies/hubspot-mailchimp/preview"),
        (Method::PUT, "/api/policies/hubspot-mailchimp"),
    ] {
        let (status, body) = admin
            .call(method.clone(), path, Some(json!({"source": broken})))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path}: {body}"
        );
        let problem = &body["problems"][0];
        assert_eq!(problem["line"], line, "{body}");
        assert!(
            problem["message"]
                .as_str()
                .unwrap()
                .contains("unknown rule `manul`"),
            "{body}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        shipped,
        "nothing saved"
    );

    let fixed = shipped.replace(
        "[fields.company]\nleft = \"properties.company\"\nright = \"merge_fields.COMPANY\"\nrule = \"manual\"",
        "[fields.company]\nleft = \"properties.company\"\nright = \"merge_fields.COMPANY\"\nrule = \"source_of_truth\"\nsource = \"hubspot\"",
    );
    let fixed = fixed.replace(
        "about = \"Company changed on both sides: a person decides\"\nfield = \"company\"\nbase = \"Contoso\"\nhubspot = \"Fabrikam\"\nmailchimp = \"Litware\"\nconflict = true",
        "about = \"Company changed on both sides: sales wins\"\nfield = \"company\"\nbase = \"Contoso\"\nhubspot = \"Fabrikam\"\nmailchimp = \"Litware\"\nexpect = \"Fabrikam\"",
    );
    assert_ne!(fixed, shipped);
    let (status, preview) = admin
        .call(
            Method::POST,
            "/api/policies/hubspot-mailchimp/preview",
            Some(json!({"source": fixed})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["new"]["conflicts_closed"], 1, "{preview}");
    assert_eq!(preview["differences"][0]["key"], ADA, "{preview}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        shipped,
        "a preview saves nothing"
    );

    let (status, saved) = admin
        .call(
            Method::PUT,
            "/api/policies/hubspot-mailchimp",
            Some(json!({"source": fixed})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), fixed);
    let (_, audit) = admin
        .call(Method::GET, "/api/audit?action=policy_saved", None)
        .await;
    assert_eq!(audit[0]["actor"], "admin", "{audit}");
    // The engine activates the saved file on its next pass, and the conflict it settles closes.
    let report = world.pass(&people.engine).await;
    assert_eq!(report.open_conflicts, 0, "{report:?}");
    assert_eq!(
        world.mailchimp_value(ADA, "COMPANY").as_deref(),
        Some("Babbage & Co")
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_oversize_bodies_are_refused() {
    let (_world, people, _shutdown) = served().await;
    let document: Value = reqwest::get(format!("{}/api/openapi.json", people.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3."),
        "{document}"
    );
    let paths = document["paths"].as_object().unwrap();
    for (method, path, _, _) in endpoints(1, "{pair}", "") {
        let templated = path
            .replace("/999999/", "/{id}/")
            .replace("/conflicts/1", "/conflicts/{id}");
        let operation = &paths
            .get(&templated)
            .unwrap_or_else(|| panic!("{templated} documented"))[method.as_str().to_lowercase()];
        assert!(operation.is_object(), "{method} {templated} documented");
    }
    assert!(paths.contains_key("/api/session"));

    let session = sign_in(&people, "admin").await;
    let huge = "x".repeat(2 << 20);
    let (status, _) = session
        .call(
            Method::POST,
            "/api/policies/hubspot-mailchimp/validate",
            Some(json!({"source": huge})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}
