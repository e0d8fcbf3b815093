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
