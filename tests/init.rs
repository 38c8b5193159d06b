//! `tandem init` and `tandem completions`: the written config loads and its
//! policy compiles, nothing is overwritten without `--force`, a missing
//! audience id is named, a URL or variable name that would not load is
//! refused before anything is written, and each shell gets a completion script.

use tandem::config::{Config, CredentialSource};

use crate::cli::{stderr, tandem};

#[tokio::test]
async fn init_writes_a_config_that_loads_and_a_policy_that_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let where_ = dir.path().to_str().unwrap();
    let output = tandem(&["init", "--dir", where_, "--list-id", "abc123"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("export HUBSPOT_TOKEN=") && said.contains("tandem plan"),
        "{said}"
    );

    let path = dir.path().join("tandem.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.pairs.len(), 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("list_id = \"abc123\""), "{text}");
    assert!(text.contains("token_env = \"HUBSPOT_TOKEN\""), "{text}");
    assert!(
        text.contains("# loop_flips = 4"),
        "every engine setting is shown: {text}"
    );

    // What the comments show is valid too: uncommenting the webhook settings
    // as the file says gives a config that loads, with the listener on.
    let enabled: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if [
                    "[http]",
                    "[[http.users]]",
                    "listen",
                    "public_url",
                    "session_hours",
                    "name",
                    "role",
                    "password_hash_env",
                    "client_secret_env",
                    "webhook_secret_env",
                ]
                .iter()
                .any(|key| rest.starts_with(key)) =>
            {
                format!("{rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let with_http = Config::parse(&path, &enabled).unwrap_or_else(|e| panic!("{e}\n{enabled}"));
    assert_eq!(with_http.http.map(|h| h.users.len()), Some(1));

    let check = tandem(
        &["policy", "check", "--config", path.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));

    // A second run leaves the files alone, unless told to overwrite them.
    std::fs::write(&path, "# edited\n").unwrap();
    let again = tandem(&["init", "--dir", where_, "--list-id", "other"], &[]).await;
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("exists already; pass --force"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# edited\n");
    let forced = tandem(
        &["init", "--dir", where_, "--list-id", "other", "--force"],
        &[],
    )
    .await;
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("list_id = \"other\"")
    );
}

#[tokio::test]
async fn init_names_what_it_needs_and_refuses_a_bad_audience_id() {
    let dir = tempfile::tempdir().unwrap();
    let where_ = dir.path().to_str().unwrap();
    // No terminal to ask at: the missing flag is named.
    let output = tandem(&["init", "--dir", where_], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let said = stderr(&output);
    assert!(
        said.starts_with("error: ") && said.lines().count() == 1 && said.contains("--list-id"),
        "{said}"
    );
    let output = tandem(&["init", "--dir", where_, "--list-id", "a\"b"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("letters and digits"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("tandem.toml").exists());
}

#[tokio::test]
async fn init_writes_the_urls_and_variables_given_and_refuses_ones_that_would_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let where_ = dir.path().to_str().unwrap();
    for (flag, value, says) in [
        ("--hubspot-url", "ftp://example.com", "not an http(s) URL"),
        ("--mailchimp-url", "nowhere", "not an http(s) URL"),
        (
            "--hubspot-token-env",
            "HUBSPOT TOKEN",
            "environment variable name",
        ),
        ("--mailchimp-api-key-env", "", "environment variable name"),
    ] {
        let output = tandem(
            &["init", "--dir", where_, "--list-id", "abc123", flag, value],
            &[],
        )
        .await;
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{flag} {value:?}: {said}");
        assert!(said.contains(flag) && said.contains(says), "{said}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing is written on bad input"
    );

    let output = tandem(
        &[
            "init",
            "--dir",
            where_,
            "--list-id",
            "abc123",
            "--hubspot-url",
            "http://127.0.0.1:8081",
            "--mailchimp-url",
            "http://127.0.0.1:8082/3.0",
            "--hubspot-token-env",
            "CRM_TOKEN",
            "--mailchimp-api-key-env",
            "MC_KEY",
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("export CRM_TOKEN="),
        "the next steps name the variables chosen"
    );
    let config = Config::load(&dir.path().join("tandem.toml")).unwrap_or_else(|e| panic!("{e}"));
    let urls: Vec<_> = config
        .connectors
        .values()
        .map(|c| c.common().base_url.clone())
        .collect();
    assert_eq!(
        urls,
        [
            Some("http://127.0.0.1:8081".to_string()),
            Some("http://127.0.0.1:8082/3.0".to_string())
        ]
    );
    let sources: Vec<_> = config
        .connectors
        .values()
        .map(|c| c.common().credential.source.clone())
        .collect();
    assert_eq!(
        sources,
        [
            CredentialSource::Env("CRM_TOKEN".into()),
            CredentialSource::Env("MC_KEY".into())
        ]
    );
}

#[tokio::test]
async fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = tandem(&["completions", shell], &[]).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&output)
        );
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(!script.trim().is_empty(), "{shell}: an empty script");
        for word in ["tandem", "reconcile", "migrate", "conflicts"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    let output = tandem(&["completions", "powershell"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
}
