//! README.md against the binary: every flag of every subcommand's `--help` is
//! in it, and the examples it quotes are what the binary does.

use std::path::Path;
use std::process::{Command, Output};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

fn secretsync(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The subcommands `secretsync --help` lists.
fn subcommands() -> Vec<String> {
    let help = text(&secretsync(&["--help"], Path::new(".")).stdout);
    help.split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("Options:").next())
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_flag_of_every_subcommand_is_in_the_readme() {
    let readme = readme();
    let reference = readme
        .split("## Command-line reference")
        .nth(1)
        .expect("README has a command-line reference");
    let commands = subcommands();
    assert!(commands.len() >= 7, "{commands:?}");
    let mut missing = Vec::new();
    for command in &commands {
        assert!(
            reference.contains(&format!("`{command}`")),
            "the reference has no entry for {command}"
        );
        let help = text(&secretsync(&[command, "--help"], Path::new(".")).stdout);
        for line in help
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with('-'))
        {
            // `-f, --filename <FILES>  text`: the flags come first.
            for flag in line
                .split([',', ' '])
                .filter(|w| !w.is_empty())
                .take_while(|w| w.starts_with('-'))
            {
                if flag == "-h" || flag == "--help" {
                    continue;
                }
                if !readme.contains(flag) {
                    missing.push(format!("{command} {flag}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags --help shows that README.md lacks: {missing:?}"
    );
}

/// The render error README quotes, word for word.
#[test]
fn the_render_error_example_is_what_render_says() {
    let readme = readme();
    let start = readme.find("`bad.yaml: document 2:").expect("the example") + 1;
    let quoted = &readme[start..start + readme[start..].find('`').unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: secretsync.io/v1\nkind: SecretStore\nmetadata: {name: fake, namespace: team}\nspec:\n  provider:\n    fake:\n      data: [{key: k, value: v}]\n---\napiVersion: secretsync.io/v1\nkind: ExternalSecret\nmetadata: {name: app, namespace: team}\nspec:\n  secretStoreRef: {name: fake}\n  data:\n    - {secretKey: ok, remoteRef: {key: k}}\n    - {secretKey: a b, remoteRef: {key: k}}\n",
    )
    .unwrap();
    let output = secretsync(&["render", "-f", "bad.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(quoted),
        "README says {quoted:?}, render says {stderr}"
    );
}

/// "change `apiVersion: external-secrets.io/v1` to `secretsync.io/v1`": the
/// same manifests under either apiVersion render the same Secret.
#[test]
fn an_eso_manifest_with_the_apiversion_changed_renders_the_same() {
    assert!(
        readme().contains("change\n`apiVersion: external-secrets.io/v1` to `secretsync.io/v1`")
    );
    let eso = "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: fake, namespace: shop}\nspec:\n  provider:\n    fake:\n      data: [{key: db, value: '{\"password\":\"p\"}'}]\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: app, namespace: shop}\nspec:\n  secretStoreRef: {name: fake, kind: SecretStore}\n  target: {name: app-env}\n  data:\n    - secretKey: password\n      remoteRef: {key: db, property: password}\n";
    let ours = eso.replace("external-secrets.io/v1", "secretsync.io/v1");
    let mut rendered = Vec::new();
    for manifests in [eso.to_string(), ours] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.yaml"), manifests).unwrap();
        let output = secretsync(&["render", "-f", "m.yaml"], dir.path());
        assert!(output.status.success(), "{}", text(&output.stderr));
        rendered.push(text(&output.stdout));
    }
    assert_eq!(rendered[0], rendered[1]);
    assert!(rendered[0].contains("name: app-env"), "{}", rendered[0]);
}
