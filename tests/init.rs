//! `tandem init` and `tandem completions`: the written config loads and its
//! policy compiles, nothing is overwritten without `--force`, a missing
//! audience id is named, and each shell gets a completion script.

use tandem::config::Config;

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
    assert!(stderr(&output).contains("--list-id"), "{}", stderr(&output));
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
        for word in ["tandem", "reconcile", "migrate", "conflicts"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    let output = tandem(&["completions", "powershell"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
}
