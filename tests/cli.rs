//! The built `secretsync` binary, driven as a user drives it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

fn secretsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(args)
        // Every log line is emitted, so a value in any of them would be seen.
        .env("RUST_LOG", "trace")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn secrets_from_yaml(text: &str) -> Vec<Secret> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Secret::deserialize(doc).expect("each document is a Secret"))
        .collect()
}

/// Decoded data of the Secret named `name`.
fn data_of(secrets: &[Secret], name: &str) -> BTreeMap<String, String> {
    let secret = secrets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no Secret {name}"));
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8(v.0.clone()).unwrap()))
        .collect()
}

#[test]
fn renders_the_examples() {
    let output = secretsync(&["render", "-f", "examples/"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let secrets = secrets_from_yaml(&stdout(&output));
    assert_eq!(secrets.len(), 3);

    let db = data_of(&secrets, "database-credentials");
    assert_eq!(db["username"], "app");
    assert_eq!(db["password"], "example-db-password");
    assert_eq!(db["previous-password"], "older-db-password");
    assert_eq!(db["api-token"], "example-api-token");

    let app = data_of(&secrets, "app-config");
    assert_eq!(
        app["DATABASE_URL"],
        "postgres://app:example-db-password@db.demo.svc:5432/shop"
    );
    assert_eq!(
        app["config.json"],
        "{\"db\": {\"host\": \"db.demo.svc\", \"user\": \"app\"}}\n"
    );
    let app_secret = secrets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("app-config"))
        .unwrap();
    let labels = app_secret.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/name"], "shop");
    assert_eq!(labels["secretsync.io/managed"], "true");
    assert_eq!(app_secret.metadata.namespace.as_deref(), Some("demo"));
    assert_eq!(app_secret.type_.as_deref(), Some("Opaque"));
    let hash = &app_secret.metadata.annotations.as_ref().unwrap()["secretsync.io/content-hash"];
    assert_eq!(hash.len(), 64);

    let settings = data_of(&secrets, "app-settings");
    assert_eq!(settings["FLAG_NEWCHECKOUT"], "on");
    assert_eq!(settings["FLAG_BETASEARCH"], "off");
    assert_eq!(settings["smtp-password"], "example-smtp-password");
    assert_eq!(settings["sentry-dsn"], "https://example@sentry.invalid/1");
    assert!(
        !settings.contains_key("feature-flags"),
        "find's name regexp filters"
    );

    // Same input, same output, byte for byte.
    assert_eq!(
        stdout(&output),
        stdout(&secretsync(&["render", "-f", "examples/"]))
    );
}

#[test]
fn json_output_is_a_list_of_the_same_secrets() {
    let yaml = secrets_from_yaml(&stdout(&secretsync(&["render", "-f", "examples/"])));
    let output = secretsync(&["render", "-f", "examples/", "-o", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let list: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(list["kind"], "List");
    let items: Vec<Secret> = serde_json::from_value(list["items"].clone()).unwrap();
    assert_eq!(items, yaml);
}

#[test]
fn out_dir_writes_one_private_file_per_secret() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = secretsync(&[
        "render",
        "-f",
        "examples/02-database.yaml",
        "-f",
        "examples/01-fake-store.yaml",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).is_empty());
    let file = out.join("demo/database-credentials.yaml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secrets = secrets_from_yaml(&std::fs::read_to_string(file).unwrap());
    assert_eq!(data_of(&secrets, "database-credentials")["username"], "app");
}

/// kubectl itself accepts the output as Kubernetes objects (offline, through
/// kustomize; applying to a server is the test bed's part).
#[test]
fn kubectl_reads_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = secretsync(&["render", "-f", "examples/"]);
    std::fs::write(dir.path().join("secrets.yaml"), output.stdout).unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "resources:\n- secrets.yaml\n",
    )
    .unwrap();
    let kubectl = Command::new("kubectl")
        .args(["kustomize", dir.path().to_str().unwrap()])
        .output()
        .expect("kubectl is installed (see .ci/run)");
    assert!(
        kubectl.status.success(),
        "{}",
        String::from_utf8_lossy(&kubectl.stderr)
    );
    let secrets = secrets_from_yaml(&String::from_utf8(kubectl.stdout).unwrap());
    assert_eq!(secrets.len(), 3);
    assert_eq!(
        data_of(&secrets, "database-credentials")["password"],
        "example-db-password"
    );
}

const STORE: &str = r#"
apiVersion: secretsync.io/v1
kind: SecretStore
metadata: {name: store, namespace: team}
spec:
  provider:
    fake:
      data:
        - {key: db, value: '{"user":"app","password":"Pa55-w0rd-never-shown"}'}
        - {key: token, value: 'token-never-shown!'}
"#;

/// Values that must never appear in any error output.
const VALUES: &[&str] = &["Pa55-w0rd-never-shown", "token-never-shown", "4242424242"];

fn external_secret(name: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: secretsync.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: team}}\nspec:\n{spec}"
    )
}

fn render_dir(files: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    (
        secretsync(&["render", "-f", dir.path().to_str().unwrap()]),
        dir,
    )
}

#[test]
fn bad_inputs_get_precise_errors_without_values() {
    let ok_ref = "secretStoreRef: {name: store}\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("invalid YAML", "apiVersion: v1\nkind: [unclosed\n".into(), "bad.yaml: document 1: invalid YAML"),
        ("no kind", "apiVersion: v1\nmetadata: {name: x}\n".into(), "bad.yaml: document 1: not a Kubernetes object: apiVersion and kind are required"),
        (
            "unknown field",
            external_secret("es", &format!("{ok_ref}data: [{{secretKey: a, remoteRef: {{key: db, keyy: x}}}}]")),
            "ExternalSecret team/es: spec.data[0].remoteRef.keyy: unknown field `keyy`, expected one of `key`",
        ),
        (
            "bad secretKey",
            external_secret("es", &format!("{ok_ref}data: [{{secretKey: 'a b', remoteRef: {{key: db}}}}]")),
            "spec.data[0].secretKey: \"a b\" is not a valid Secret key: may hold only letters, digits",
        ),
        (
            "duplicate secretKey",
            external_secret("es", &format!("{ok_ref}data: [{{secretKey: a, remoteRef: {{key: db}}}}, {{secretKey: a, remoteRef: {{key: token}}}}]")),
            "spec.data[1].secretKey: duplicate secretKey \"a\"",
        ),
        ("no data", external_secret("es", ok_ref), "ExternalSecret team/es: spec: one of data or dataFrom is required"),
        (
            "Delete without Owner",
            external_secret("es", &format!("{ok_ref}target: {{creationPolicy: Orphan, deletionPolicy: Delete}}\ndata: [{{secretKey: a, remoteRef: {{key: db}}}}]")),
            "spec.target.deletionPolicy: Delete requires creationPolicy Owner",
        ),
        (
            "Merge with None",
            external_secret("es", &format!("{ok_ref}target: {{creationPolicy: None, deletionPolicy: Merge}}\ndata: [{{secretKey: a, remoteRef: {{key: db}}}}]")),
            "spec.target.deletionPolicy: Merge cannot be combined with creationPolicy None",
        ),
        (
            "unknown creationPolicy",
            external_secret("es", &format!("{ok_ref}target: {{creationPolicy: Sometimes}}\ndata: [{{secretKey: a, remoteRef: {{key: db}}}}]")),
            "spec.target.creationPolicy: unknown variant `Sometimes`",
        ),
        (
            "bad refreshInterval",
            external_secret("es", &format!("{ok_ref}refreshInterval: 1 hour\ndata: [{{secretKey: a, remoteRef: {{key: db}}}}]")),
            "ExternalSecret team/es: spec.refreshInterval: \"1 hour\" is not a duration: unknown unit \" hour\"",
        ),
        (
            "missing store",
            external_secret("es", "secretStoreRef: {name: nowhere}\ndata: [{secretKey: a, remoteRef: {key: db}}]"),
            "spec.secretStoreRef: SecretStore \"nowhere\" not found in namespace \"team\"",
        ),
        (
            "missing remote key",
            external_secret("es", &format!("{ok_ref}data: [{{secretKey: a, remoteRef: {{key: nope}}}}]")),
            "spec.data[0].remoteRef (remote key \"nope\"): remote key \"nope\" not found",
        ),
        (
            "missing property",
            external_secret("es", &format!("{ok_ref}data: [{{secretKey: a, remoteRef: {{key: db, property: pass}}}}]")),
            "spec.data[0].remoteRef: property \"pass\" not found in remote key \"db\"",
        ),
        (
            "property of non-JSON",
            external_secret("es", &format!("{ok_ref}data: [{{secretKey: a, remoteRef: {{key: token, property: x}}}}]")),
            "remote key \"token\" is not JSON",
        ),
        (
            "bad base64",
            external_secret("es", &format!("{ok_ref}data: [{{secretKey: a, remoteRef: {{key: token, decodingStrategy: Base64}}}}]")),
            "spec.data[0].remoteRef: value of remote key \"token\" is not valid base64",
        ),
        (
            "template parse error",
            external_secret("es", &format!("{ok_ref}target: {{template: {{data: {{url: 'x {{{{ .a | }}'}}}}}}\ndata: [{{secretKey: a, remoteRef: {{key: db}}}}]")),
            "spec.target.template.data.url: line 1, column",
        ),
        (
            "template exec error",
            external_secret("es", &format!("{ok_ref}target: {{template: {{data: {{url: \"ok\\n{{{{ .a | mustFromJson }}}}\"}}}}}}\ndata: [{{secretKey: a, remoteRef: {{key: db, property: password}}}}]")),
            "ExternalSecret team/es: spec.target.template.data.url: line 2, column",
        ),
        (
            "template missing key",
            external_secret("es", &format!("{ok_ref}target: {{template: {{data: {{url: '{{{{ .nope }}}}'}}}}}}\ndata: [{{secretKey: a, remoteRef: {{key: db}}}}]")),
            "spec.target.template.data.url: line 1, column 4 near `.nope`: key \"nope\" is not in the data",
        ),
        (
            "bad find regexp",
            external_secret("es", &format!("{ok_ref}dataFrom: [{{find: {{name: {{regexp: '(['}}}}}}]")),
            "spec.dataFrom[0].find.name.regexp: invalid regular expression",
        ),
        (
            "unsupported provider",
            "apiVersion: secretsync.io/v1\nkind: SecretStore\nmetadata: {name: v, namespace: team}\nspec: {provider: {vault: {server: x}}}\n".into(),
            "SecretStore team/v: spec.provider.vault: unknown field `vault`, expected `aws` or `fake`",
        ),
        (
            "fake value not a string",
            "apiVersion: secretsync.io/v1\nkind: SecretStore\nmetadata: {name: n, namespace: team}\nspec: {provider: {fake: {data: [{key: k, value: 4242424242}]}}}\n".into(),
            "SecretStore team/n: spec.provider.fake.data[0].value: invalid type: integer, expected a string",
        ),
        (
            "unserved apiVersion",
            "apiVersion: secretsync.io/v2\nkind: ExternalSecret\nmetadata: {name: es, namespace: team}\n".into(),
            "ExternalSecret team/es: apiVersion \"secretsync.io/v2\" is not served",
        ),
        (
            "cluster store refuses namespace",
            format!(
                "apiVersion: secretsync.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: shared}}\nspec: {{provider: {{fake: {{data: []}}}}, conditions: [{{namespaces: [other]}}]}}\n---\n{}",
                external_secret("es", "secretStoreRef: {name: shared, kind: ClusterSecretStore}\ndata: [{secretKey: a, remoteRef: {key: db}}]")
            ),
            "ClusterSecretStore \"shared\" does not admit namespace \"team\"",
        ),
        (
            "role is not an ARN",
            "apiVersion: secretsync.io/v1\nkind: SecretStore\nmetadata: {name: aws, namespace: team}\nspec: {provider: {aws: {service: SecretsManager, region: eu-west-1, role: admin}}}\n".into(),
            "SecretStore team/aws: spec.provider.aws.role: \"admin\" is not an IAM role ARN",
        ),
    ];
    assert!(cases.len() >= 12);
    for (what, bad, expected) in &cases {
        let (output, _dir) = render_dir(&[("store.yaml", STORE), ("bad.yaml", bad)]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{what}: exit code\n{err}");
        assert!(
            err.contains(expected),
            "{what}:\n  want: {expected}\n  got: {err}"
        );
        assert!(
            err.contains("bad.yaml"),
            "{what}: the error names the file\n{err}"
        );
        for value in VALUES {
            assert!(!err.contains(value), "{what}: a value leaked:\n{err}");
            assert!(
                !stdout(&output).contains(value),
                "{what}: a failed ExternalSecret left output"
            );
        }
    }
}

#[test]
fn one_failure_does_not_stop_the_others_nor_leave_a_partial_secret() {
    let good = external_secret(
        "good",
        "secretStoreRef: {name: store}\ndata: [{secretKey: user, remoteRef: {key: db, property: user}}]",
    );
    // The first key resolves; the second does not: no Secret at all for `half`.
    let half = external_secret(
        "half",
        "secretStoreRef: {name: store}\ndata: [{secretKey: user, remoteRef: {key: db, property: user}}, {secretKey: b, remoteRef: {key: gone}}]",
    );
    let bad_template = external_secret(
        "tpl",
        "secretStoreRef: {name: store}\ntarget: {template: {data: {x: '{{ .nope }}'}}}\ndata: [{secretKey: a, remoteRef: {key: db}}]",
    );
    let (output, _dir) = render_dir(&[
        ("store.yaml", STORE),
        ("es.yaml", &format!("{good}---\n{half}---\n{bad_template}")),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let secrets = secrets_from_yaml(&stdout(&output));
    assert_eq!(secrets.len(), 1, "only the good ExternalSecret renders");
    assert_eq!(data_of(&secrets, "good")["user"], "app");
    let err = stderr(&output);
    assert!(err.contains("es.yaml: document 2: ExternalSecret team/half: spec.data[1].remoteRef (remote key \"gone\")"), "{err}");
    assert!(
        err.contains("es.yaml: document 3: ExternalSecret team/tpl: spec.target.template.data.x"),
        "{err}"
    );
    assert!(err.contains("1 Secret(s) rendered, 2 error(s)"), "{err}");
}

#[test]
fn missing_path_and_usage_errors() {
    let output = secretsync(&["render", "-f", "no/such/dir"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no/such/dir: cannot read"),
        "{}",
        stderr(&output)
    );
    let output = secretsync(&["render"]);
    assert_eq!(output.status.code(), Some(2), "clap reports a usage error");
    let output = secretsync(&["render", "-f", "examples/", "-o", "xml"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn crds_directory_is_current() {
    let dir = tempfile::tempdir().unwrap();
    let output = secretsync(&["crdgen", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let listing = |path: &Path| -> BTreeMap<String, String> {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect()
    };
    let fresh = listing(dir.path());
    let committed = listing(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"));
    assert_eq!(fresh.len(), 12);
    let fresh_compat = listing(&dir.path().join("compat"));
    assert_eq!(fresh_compat.len(), 12);
    assert!(
        fresh_compat == listing(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/compat")),
        "crds/compat is stale: run `cargo run -- crdgen --out-dir crds` and commit the result"
    );
    assert!(
        fresh == committed,
        "crds/ is stale: run `cargo run -- crdgen --out-dir crds` and commit the result"
    );
    // crdgen to stdout prints the same CRDs.
    let printed = stdout(&secretsync(&["crdgen"]));
    for text in fresh.values() {
        assert!(printed.contains(text.as_str()));
    }
}

/// A manifest written for ESO, in the style of its docs, renders unchanged.
#[test]
fn eso_manifests_render_as_they_are() {
    let eso = r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: shared
spec:
  provider:
    fake:
      data:
        - key: /prod/db
          value: '{"database_url":"postgres://app:Pa55-w0rd-never-shown@db:5432/app"}'
---
apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata:
  name: app
  namespace: shop
spec:
  refreshInterval: 15m
  secretStoreRef:
    name: shared
    kind: ClusterSecretStore
  target:
    name: app-env
    creationPolicy: Owner
    template:
      engineVersion: v2
      data:
        DATABASE_URL: "{{ .database_url }}"
  data:
    - secretKey: database_url
      remoteRef:
        key: /prod/db
        property: database_url
        conversionStrategy: Default
        decodingStrategy: None
        metadataPolicy: None
"#;
    let (output, _dir) = render_dir(&[("eso.yaml", eso)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let secrets = secrets_from_yaml(&stdout(&output));
    assert_eq!(
        data_of(&secrets, "app-env")["DATABASE_URL"],
        "postgres://app:Pa55-w0rd-never-shown@db:5432/app"
    );
    assert_eq!(secrets[0].metadata.namespace.as_deref(), Some("shop"));
}

/// The deployment manifests build (kustomize) into the objects the README lists.
#[test]
fn deploy_manifests_build() {
    let output = Command::new("kubectl")
        .args(["kustomize", "deploy/"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kubectl is installed (see .ci/run)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let kinds: Vec<String> =
        serde_yaml_ng::Deserializer::from_str(&String::from_utf8(output.stdout).unwrap())
            .map(|doc| {
                serde_yaml_ng::Value::deserialize(doc).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(
            kinds.contains(&kind.to_string()),
            "{kind} missing: {kinds:?}"
        );
    }
}

/// Inputs that hold nothing to render, and a directory that loops on itself.
#[test]
fn empty_inputs_are_reported_with_the_exit_codes_documented() {
    // A directory without manifest files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let output = secretsync(&["render", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no .yaml, .yml or .json files in this directory"),
        "{}",
        stderr(&output)
    );

    // Only a store: nothing to render.
    let (output, _dir) = render_dir(&[("store.yaml", STORE)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("nothing to render: no ExternalSecret in"));

    // An empty file beside a good ExternalSecret: a warning, exit 0.
    let good = external_secret(
        "good",
        "secretStoreRef: {name: store}\ndata: [{secretKey: user, remoteRef: {key: db, property: user}}]",
    );
    let (output, _dir) = render_dir(&[
        ("store.yaml", STORE),
        ("es.yaml", &good),
        ("empty.yaml", ""),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("empty.yaml: empty file (no documents)"));
    assert_eq!(secrets_from_yaml(&stdout(&output)).len(), 1);

    // creationPolicy None everywhere: nothing rendered, on purpose: exit 0.
    let none = external_secret(
        "none",
        "secretStoreRef: {name: store}\ntarget: {creationPolicy: None}\ndata: [{secretKey: user, remoteRef: {key: db, property: user}}]",
    );
    let (output, _dir) = render_dir(&[("store.yaml", STORE), ("es.yaml", &none)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("note: no Secret rendered"));

    // A symlink back to its own directory: each file is read once.
    let (output, dir) = render_dir(&[("store.yaml", STORE), ("es.yaml", &good)]);
    assert_eq!(output.status.code(), Some(0));
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    let output = secretsync(&["render", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(secrets_from_yaml(&stdout(&output)).len(), 1);

    // A namespace flag that is no namespace is a usage error.
    let output = secretsync(&["render", "-f", "examples/", "-n", "../x"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not a valid namespace"));
}

/// `render` no longer panics on the durations of issue 9, and the valid
/// objects in the same file still render.
#[test]
fn hostile_durations_fail_alone() {
    for interval in [
        "1h-5m",
        "5000000000000000h",
        "4000000000000000h4000000000000000h",
        "1d",
    ] {
        let bad = external_secret(
            "bad",
            &format!(
                "secretStoreRef: {{name: store}}\nrefreshInterval: '{interval}'\ndata: [{{secretKey: a, remoteRef: {{key: db}}}}]"
            ),
        );
        let good = external_secret(
            "good",
            "secretStoreRef: {name: store}\ndata: [{secretKey: user, remoteRef: {key: db, property: user}}]",
        );
        let (output, _dir) = render_dir(&[("all.yaml", &format!("{STORE}---\n{bad}---\n{good}"))]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{interval}: {err}");
        assert!(!err.contains("panicked"), "{interval}: {err}");
        assert!(
            err.contains(&format!("spec.refreshInterval: \"{interval}\"")),
            "{err}"
        );
        assert_eq!(
            data_of(&secrets_from_yaml(&stdout(&output)), "good")["user"],
            "app"
        );
    }
}

// --- `secretsync completions` (issue 32) ---

#[test]
fn completions_print_a_script_for_each_shell_that_knows_the_subcommands() {
    let bash = secretsync(&["completions", "bash"]);
    assert!(bash.status.success(), "{}", stderr(&bash));
    let script = stdout(&bash);
    assert!(
        script.contains("complete -F"),
        "a bash completion: {script}"
    );
    for subcommand in ["render", "controller", "status", "seal", "completions"] {
        assert!(
            script.contains(&format!("secretsync,{subcommand})")),
            "bash completion lacks {subcommand}"
        );
    }
    // status's own flags are completed too.
    assert!(script.contains("--failing") && script.contains("--stale"));
    for (shell, marker) in [
        ("zsh", "#compdef secretsync"),
        ("fish", "complete -c secretsync"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion"),
    ] {
        let output = secretsync(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        assert!(stdout(&output).contains(marker), "{shell}");
    }
    let unknown = secretsync(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("bash"), "{}", stderr(&unknown));
}

// --- `secretsync diff` (issue 32) ---

/// A fake store with `values` (key -> value) and an ExternalSecret reading
/// each as a Secret key of `app-secret` in `demo`, labelled `tier: <tier>`.
fn diff_manifests(values: &[(&str, &str)], tier: &str) -> String {
    let data: String = values
        .iter()
        .map(|(k, v)| format!("        - key: {k}\n          value: {v}\n"))
        .collect();
    let refs: String = values
        .iter()
        .map(|(k, _)| format!("    - secretKey: {k}\n      remoteRef:\n        key: {k}\n"))
        .collect();
    format!(
        "apiVersion: secretsync.io/v1\nkind: SecretStore\nmetadata:\n  name: fake\n  namespace: demo\nspec:\n  provider:\n    fake:\n      data:\n{data}---\napiVersion: secretsync.io/v1\nkind: ExternalSecret\nmetadata:\n  name: app\n  namespace: demo\nspec:\n  secretStoreRef:\n    name: fake\n    kind: SecretStore\n  target:\n    name: app-secret\n    template:\n      metadata:\n        labels:\n          tier: {tier}\n  data:\n{refs}"
    )
}

const DIFF_WORKLOADS: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  annotations:\n    reloader.stakater.com/auto: \"true\"\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n        - name: web\n          image: web\n          envFrom: [{secretRef: {name: app-secret}}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: idle\n  namespace: demo\nspec:\n  selector: {matchLabels: {app: idle}}\n  template:\n    metadata: {labels: {app: idle}}\n    spec:\n      containers:\n        - name: idle\n          image: idle\n          envFrom: [{secretRef: {name: app-secret}}]\n";

fn sha12(value: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(value.as_bytes())[..6])
}

#[test]
fn diff_shows_added_removed_and_changed_keys_by_hash_and_the_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let head = dir.path().join("head");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::create_dir_all(&head).unwrap();
    std::fs::write(
        base.join("app.yaml"),
        diff_manifests(
            &[
                ("kept", "same-value-1"),
                ("rotated", "old-value-2"),
                ("dropped", "gone-value-3"),
            ],
            "a",
        ),
    )
    .unwrap();
    std::fs::write(
        head.join("app.yaml"),
        diff_manifests(
            &[
                ("kept", "same-value-1"),
                ("rotated", "new-value-4"),
                ("added", "fresh-value-5"),
            ],
            "b",
        ),
    )
    .unwrap();
    std::fs::write(head.join("workloads.yaml"), DIFF_WORKLOADS).unwrap();
    let (base, head) = (base.to_str().unwrap(), head.to_str().unwrap());

    let output = secretsync(&["diff", "-f", head, "--against", base, "-o", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["changed"], true);
    let target = &report["targets"][0];
    assert_eq!(target["owner"], "ExternalSecret demo/app");
    assert_eq!(target["name"], "app-secret");
    assert_eq!(target["action"], "update");
    assert_eq!(
        target["added"],
        serde_json::json!([{"key": "added", "sha256": sha12("fresh-value-5")}])
    );
    assert_eq!(
        target["removed"],
        serde_json::json!([{"key": "dropped", "sha256": sha12("gone-value-3")}])
    );
    assert_eq!(
        target["changed"],
        serde_json::json!([{"key": "rotated", "from": sha12("old-value-2"), "to": sha12("new-value-4")}])
    );
    assert_eq!(
        target["labels"],
        serde_json::json!([{"key": "tier", "from": "a", "to": "b"}])
    );
    // Only the Deployment that opts in restarts.
    assert_eq!(
        target["restarts"],
        serde_json::json!(["Deployment demo/web"])
    );

    let text = secretsync(&["diff", "-f", head, "--against", base]);
    assert_eq!(text.status.code(), Some(1), "{}", stderr(&text));
    let shown = stdout(&text);
    assert!(
        shown.contains("update Secret demo/app-secret (ExternalSecret demo/app)"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("+ added  sha256:{}", sha12("fresh-value-5"))),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "~ rotated  sha256:{} -> sha256:{}",
            sha12("old-value-2"),
            sha12("new-value-4")
        )),
        "{shown}"
    );
    assert!(shown.contains("- dropped"), "{shown}");
    assert!(
        shown.contains("restarts Deployment demo/web") && !shown.contains("idle"),
        "{shown}"
    );

    // No value, old or new, in any output (logs at trace level included).
    for output in [&output, &text] {
        let all = format!("{}{}", stdout(output), stderr(output));
        for value in [
            "same-value-1",
            "old-value-2",
            "gone-value-3",
            "new-value-4",
            "fresh-value-5",
        ] {
            assert!(!all.contains(value), "{value} printed");
        }
    }
}

#[test]
fn diff_exits_0_without_change_and_compares_with_a_previous_render() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("app.yaml");
    std::fs::write(
        &manifests,
        diff_manifests(&[("one", "value-one"), ("two", "value-two")], "a"),
    )
    .unwrap();
    let manifests = manifests.to_str().unwrap();
    let same = secretsync(&["diff", "-f", manifests, "--against", manifests]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}{}",
        stdout(&same),
        stderr(&same)
    );
    assert!(
        stdout(&same).contains("0 of 1 Secret(s) would change"),
        "{}",
        stdout(&same)
    );

    // Against the Secrets an earlier `render` wrote.
    let rendered = secretsync(&[
        "render",
        "-f",
        manifests,
        "--out-dir",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let unchanged = secretsync(&["diff", "-f", manifests, "--against", out]);
    assert_eq!(
        unchanged.status.code(),
        Some(0),
        "{}{}",
        stdout(&unchanged),
        stderr(&unchanged)
    );
    let changed_manifests = dir.path().join("changed.yaml");
    std::fs::write(
        &changed_manifests,
        diff_manifests(&[("one", "value-one"), ("two", "value-2")], "a"),
    )
    .unwrap();
    let changed = secretsync(&[
        "diff",
        "-f",
        changed_manifests.to_str().unwrap(),
        "--against",
        out,
    ]);
    assert_eq!(changed.status.code(), Some(1), "{}", stderr(&changed));
    assert!(stdout(&changed).contains(&format!(
        "~ two  sha256:{} -> sha256:{}",
        sha12("value-two"),
        sha12("value-2")
    )));

    // A new target Secret is a create; an ExternalSecret gone is a delete.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let created = secretsync(&[
        "diff",
        "-f",
        manifests,
        "--against",
        empty.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(created.status.code(), Some(1), "{}", stderr(&created));
    let report: serde_json::Value = serde_json::from_str(&stdout(&created)).unwrap();
    assert_eq!(report["targets"][0]["action"], "create");
    assert_eq!(report["targets"][0]["added"].as_array().unwrap().len(), 2);
}

#[test]
fn diff_exits_2_on_errors_and_needs_something_to_compare_with() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    // The ExternalSecret reads a key the store does not have.
    let text = diff_manifests(&[("one", "value-one")], "a").replace(
        "remoteRef:\n        key: one",
        "remoteRef:\n        key: missing",
    );
    std::fs::write(&broken, text).unwrap();
    let output = secretsync(&[
        "diff",
        "-f",
        broken.to_str().unwrap(),
        "--against",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stderr(&output).contains("error:"), "{}", stderr(&output));
    // Neither --against nor --live: a usage error, also 2.
    let usage = secretsync(&["diff", "-f", broken.to_str().unwrap()]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("--against"), "{}", stderr(&usage));
}

/// The subcommands listed under "Commands:" in a help text (not `help`).
fn subcommands_in(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter(|line| !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Each flag and argument of a long help text with what it says, minus
/// clap's own annotations (defaults, environment, possible values).
fn described_flags(help: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut in_list = false;
    for line in help.lines() {
        if line == "Options:" || line == "Arguments:" {
            in_list = true;
            continue;
        }
        if !line.starts_with(' ') && !line.is_empty() {
            in_list = false;
            continue;
        }
        if !in_list || line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        let starts_entry = (indent == 2 && (text.starts_with('-') || text.starts_with('<')))
            || (indent == 6 && text.starts_with("--"));
        if starts_entry {
            let (spec, rest) = text.split_once("  ").unwrap_or((text, ""));
            entries.push((spec.to_string(), rest.trim().to_string()));
        } else if let Some((_, said)) = entries.last_mut() {
            said.push(' ');
            said.push_str(text);
        }
    }
    entries
        .into_iter()
        .map(|(spec, said)| {
            let mut words = String::new();
            let mut depth = 0usize;
            for c in said.chars() {
                match c {
                    '[' => depth += 1,
                    ']' if depth > 0 => depth -= 1,
                    _ if depth == 0 => words.push(c),
                    _ => {}
                }
            }
            // `Possible values:` lists the values' own help, not the flag's.
            let words = match words.find("Possible values:") {
                Some(at) => words[..at].to_string(),
                None => words,
            };
            (spec, words.trim().to_string())
        })
        .collect()
}

#[test]
fn every_flag_of_every_command_says_what_it_does_there() {
    let top = secretsync(&["--help"]);
    assert!(top.status.success());
    let mut commands: Vec<Vec<String>> = subcommands_in(&stdout(&top))
        .into_iter()
        .map(|name| vec![name])
        .collect();
    assert!(commands.len() >= 10, "{}", stdout(&top));
    let sealing = ["keygen", "seal", "unseal", "reseal", "keys"];
    let mut missing = Vec::new();
    let mut seen = 0;
    while let Some(path) = commands.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = secretsync(&args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let help = stdout(&output);
        for sub in subcommands_in(&help) {
            let mut deeper = path.clone();
            deeper.push(sub);
            commands.push(deeper);
        }
        let flags = described_flags(&help);
        assert!(
            flags.iter().any(|(spec, _)| spec.contains("--help")),
            "{args:?}: no flags parsed from\n{help}"
        );
        seen += 1;
        for (spec, said) in flags {
            if said.is_empty() {
                missing.push(format!("{}: {spec}", path.join(" ")));
            }
        }
        if sealing.contains(&path[0].as_str()) {
            // The controller's wording (its threads, watches, reconciles and
            // fleet sizes) has nothing to say about sealing.
            for word in [
                "worker-threads",
                "reconcile",
                "watches",
                "10,000 ExternalSecrets",
            ] {
                assert!(
                    !help.contains(word),
                    "`{}` help mentions {word:?}:\n{help}",
                    path.join(" ")
                );
            }
        }
    }
    assert!(seen >= 12, "only {seen} commands seen");
    // The reading above sees a bare flag in both of clap's layouts.
    let bare = described_flags(
        "Options:\n  -f, --filename <FILE>\n          \n\n  -o, --output <OUTPUT>\n          Possible values:\n          - yaml: YAML\n          \n          [default: yaml]\n\n      --raw\n  -h, --help  Print help\n",
    );
    let bare: Vec<&str> = bare
        .iter()
        .filter(|(_, said)| said.is_empty())
        .map(|(spec, _)| spec.as_str())
        .collect();
    assert_eq!(
        bare,
        ["-f, --filename <FILE>", "-o, --output <OUTPUT>", "--raw"]
    );
    assert!(
        missing.is_empty(),
        "flags without a description:\n{}",
        missing.join("\n")
    );
    // Kept out of the help, but still accepted where scripts pass it everywhere.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    let keygen = secretsync(&[
        "keygen",
        "--worker-threads",
        "2",
        "-o",
        key.to_str().unwrap(),
    ]);
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    assert!(stdout(&keygen).starts_with("age1"), "{}", stdout(&keygen));
}

/// Set in the child process `a_panic_says_where_but_never_a_value_formatted_into_it`
/// starts: `plain` (no log subscriber) or `json` (the binary's JSON log).
const PANIC_CHILD: &str = "SECRETSYNC_TEST_PANIC_CHILD";
const PANIC_VALUE: &str = "pw-7f3a9c-in-a-panic";

/// The binary's hook, in a process of its own (a panic hook is process-wide):
/// panics whose messages were formatted with a value, and one fixed at
/// compile time.
fn panic_child(mode: &str) {
    if mode == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .init();
    }
    secretsync::panic_hook::install();
    let spawn = |name: &str, f: fn()| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .unwrap()
            .join()
    };
    assert!(spawn("formatted", || panic!("the password is {PANIC_VALUE}")).is_err());
    assert!(
        spawn("unwrapped", || {
            let read: Result<(), String> =
                std::hint::black_box(Err(format!("bad value {PANIC_VALUE:?}")));
            read.unwrap();
        })
        .is_err()
    );
    assert!(
        spawn("compared", || assert_eq!(
            PANIC_VALUE.len(),
            0,
            "{PANIC_VALUE}"
        ))
        .is_err()
    );
    assert!(spawn("fixed", || panic!("a message fixed at compile time")).is_err());
}

#[test]
fn a_panic_says_where_but_never_a_value_formatted_into_it() {
    if let Ok(mode) = std::env::var(PANIC_CHILD) {
        return panic_child(&mode);
    }
    // The test's name as libtest knows it: its module path without the crate.
    let (_, module) = module_path!().split_once("::").unwrap();
    let name = format!("{module}::a_panic_says_where_but_never_a_value_formatted_into_it");
    for (mode, backtrace) in [("plain", "0"), ("json", "1")] {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &name, "--nocapture"])
            .env(PANIC_CHILD, mode)
            .env("RUST_BACKTRACE", backtrace)
            .output()
            .unwrap();
        let err = stderr(&output);
        assert!(output.status.success(), "{mode}: {}{err}", stdout(&output));
        assert!(
            !err.contains(PANIC_VALUE),
            "{mode}: the value shows:\n{err}"
        );
        for thread in ["formatted", "unwrapped", "compared", "fixed"] {
            assert!(
                err.contains(&format!("thread '{thread}' panicked at tests/cli.rs:")),
                "{mode}: {thread}: {err}"
            );
        }
        assert_eq!(err.matches("message withheld").count(), 3, "{mode}: {err}");
        assert!(
            err.contains("a message fixed at compile time"),
            "{mode}: {err}"
        );
        if mode == "json" {
            let events: Vec<serde_json::Value> = err
                .lines()
                .filter(|line| line.starts_with('{'))
                .map(|line| serde_json::from_str(line).expect("one JSON event a line"))
                .collect();
            assert_eq!(events.len(), 4, "{err}");
            assert!(
                events
                    .iter()
                    .all(|e| e["level"] == "ERROR" && e["target"] == "panic")
            );
            // RUST_BACKTRACE=1: the frames come too, no data. With line
            // tables a frame shows its place (and a closure a short name);
            // without (CI's build, a release build) the full name.
            assert!(
                events.iter().all(|e| {
                    let message = e["fields"]["message"].as_str().unwrap();
                    message.contains("at ./tests/cli.rs:")
                        || message.contains("integration::cli::panic_child")
                }),
                "{err}"
            );
        }
    }
}

#[test]
fn unseal_refuses_duplicate_keys_and_secrets_the_api_server_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let keygen = secretsync(&["keygen", "-o", &path("key.txt")]);
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let recipient = stdout(&keygen).trim().to_string();
    let values = ["Unseal-adm-crt-1", "Unseal-adm-pw-2"];
    let seal = |name: &str, manifest: &str| {
        std::fs::write(path(&format!("{name}.yaml")), manifest).unwrap();
        let sealed = secretsync(&[
            "seal",
            "-r",
            &recipient,
            "-f",
            &path(&format!("{name}.yaml")),
        ]);
        assert!(sealed.status.success(), "{}", stderr(&sealed));
        stdout(&sealed)
    };
    let unseal = |name: &str, text: &str| {
        std::fs::write(path(name), text).unwrap();
        let output = secretsync(&["unseal", "-i", &path("key.txt"), "-f", &path(name)]);
        for value in values {
            assert!(!stdout(&output).contains(value) || output.status.success());
            assert!(!stderr(&output).contains(value), "{}", stderr(&output));
        }
        output
    };

    // A TLS Secret without its key seals (seal takes what it is given), but
    // unsealed it is a Secret `kubectl apply` would refuse: said, not printed.
    let tls = seal(
        "tls",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: web, namespace: app}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: Unseal-adm-crt-1\n",
    );
    let refused = unseal("tls-sealed.yaml", &tls);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stdout(&refused).is_empty(), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains(
            "the Secret app/web would be refused by the API server: data[\"tls.key\"]: is required by type kubernetes.io/tls"
        ),
        "{}",
        stderr(&refused)
    );

    // A well-formed one unseals; the same with a key given twice does not.
    let opaque = seal(
        "opaque",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: app}\nstringData:\n  password: Unseal-adm-pw-2\n",
    );
    let fine = unseal("opaque-sealed.yaml", &opaque);
    assert!(fine.status.success(), "{}", stderr(&fine));
    assert!(opaque.contains("  namespace: app\n"), "{opaque}");
    let twice = opaque.replacen(
        "  namespace: app\n",
        "  namespace: app\n  namespace: other\n",
        1,
    );
    let duplicated = unseal("twice.yaml", &twice);
    assert_eq!(duplicated.status.code(), Some(1), "{}", stdout(&duplicated));
    assert!(stdout(&duplicated).is_empty());
    assert!(
        stderr(&duplicated).contains("duplicate key \"namespace\""),
        "{}",
        stderr(&duplicated)
    );
    // As with render, a key twice in JSON too.
    let json = secretsync(&[
        "seal",
        "-r",
        &recipient,
        "-o",
        "json",
        "-f",
        &path("opaque.yaml"),
    ]);
    let json = stdout(&json).replacen(
        "\"name\": \"db\",",
        "\"name\": \"db\", \"name\": \"db2\",",
        1,
    );
    assert!(json.contains("\"db2\""), "{json}");
    let duplicated = unseal("twice.json", &json);
    assert_eq!(duplicated.status.code(), Some(1));
    assert!(
        stderr(&duplicated).contains("duplicate key \"name\""),
        "{}",
        stderr(&duplicated)
    );
}

#[test]
fn render_refuses_a_file_or_a_run_over_its_documented_size_limits_naming_the_file() {
    const MIB: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let good = format!(
        "apiVersion: secretsync.io/v1\nkind: SecretStore\nmetadata: {{name: s, namespace: team}}\nspec: {{provider: {{fake: {{data: [{{key: k, value: Size-limit-v}}]}}}}}}\n---\n{}",
        external_secret(
            "small",
            "secretStoreRef: {name: s}\ndata:\n- {secretKey: a, remoteRef: {key: k}}"
        )
    );
    std::fs::write(path("good.yaml"), &good).unwrap();
    // Sparse files (NUL bytes): sized in no time, and never parsed.
    let sized = |name: &str, size: u64| {
        let file = std::fs::File::create(path(name)).unwrap();
        file.set_len(size).unwrap();
        path(name).to_str().unwrap().to_string()
    };
    let over = sized("over.yaml", 8 * MIB + 1);
    let at_limit = sized("at-limit.yaml", 8 * MIB);
    // With good.yaml, exactly 16 MiB so far: allowed.
    let rest = sized("rest.yaml", 8 * MIB - good.len() as u64);
    let one_more = sized("one-more.yaml", 1);
    let good = path("good.yaml").to_str().unwrap().to_string();
    let output = secretsync(&[
        "render", "-f", &good, "-f", &over, "-f", &at_limit, "-f", &rest, "-f", &one_more,
    ]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{over}: 8388609 bytes is more than render reads from one file (at most 8388608 bytes, 8 MiB)"
        )),
        "{err}"
    );
    // Read (and found not to be YAML: NUL bytes), so they count.
    assert!(
        err.contains(&format!("{at_limit}: document 1: invalid YAML")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{rest}: document 1: invalid YAML")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{one_more}: with it the manifests given total 16777217 bytes, more than render reads in one run (at most 16777216 bytes, 16 MiB)"
        )),
        "{err}"
    );
    // The file within the limits still renders.
    let secrets = secrets_from_yaml(&stdout(&output));
    assert_eq!(data_of(&secrets, "small")["a"], "Size-limit-v");
}
