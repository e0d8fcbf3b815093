//! Bitnami Sealed Secrets compatibility through the CLI, against sealers
//! nobody here wrote: PyPI `kubesealpy` (all three scopes) and npm
//! `@linode/kubeseal-encrypt` (namespace-wide), with keys made by the
//! `openssl` CLI and exported as `kubectl get secret -o yaml` prints them.
//! scripts/test installs the peers.

use crate::support::bitnami as sealers;
use crate::support::peers;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// Every plaintext value a test seals: none may show in any output but `unseal`'s.
const VALUES: &[&str] = &[
    "kubesealpy-strict-pw",
    "kubesealpy-ns-wide-pw",
    "kubesealpy-cluster-wide-pw",
    "linode-ns-wide-pw",
    "old-key-pw",
    "renewed-key-pw",
];

fn run(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}", peers::missing(program, e)));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn secretsync(args: &[&str]) -> Output {
    run(Path::new(env!("CARGO_BIN_EXE_secretsync")), args, None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// stdout of a run that must succeed; its stderr must not hold a value.
fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_no_value(&text(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// stderr of a run that must fail; neither stream may hold a value.
fn failure(output: Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected a failure: {}",
        text(&output.stdout)
    );
    assert_no_value(&text(&output.stdout));
    let stderr = text(&output.stderr);
    assert_no_value(&stderr);
    stderr
}

fn assert_no_value(output: &str) {
    for value in VALUES {
        assert!(!output.contains(value), "{value} shows in: {output}");
        assert!(
            !output.contains(&STANDARD.encode(value)),
            "{value} (base64) shows in: {output}"
        );
    }
}

/// The keys, sealers' inputs and the export, made once per test process.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
    fn write(&self, name: &str, contents: &str) -> String {
        std::fs::write(self.path(name), contents).unwrap();
        self.arg(name)
    }
}

/// Two 2048-bit keys as Bitnami's controller keeps them (an old one, PKCS#1
/// as Bitnami writes it, and a renewed one, PKCS#8), their certificates and
/// public keys, and `main.key`: both exported as `kubectl get secret -n
/// kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml` does.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = Keys {
            dir: tempfile::tempdir().unwrap(),
        };
        let mut items = Vec::new();
        for (name, traditional, suffix) in [("old", true, "abcde"), ("new", false, "fghij")] {
            let made = sealers::key(keys.dir.path(), name, traditional);
            let crt = made.cert_file.clone();
            let key_pem = std::fs::read(&made.key_file).unwrap();
            items.push(json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {
                    "name": format!("sealed-secrets-key{suffix}"),
                    "namespace": "kube-system",
                    "generateName": "sealed-secrets-key",
                    "uid": format!("5f0c1a2e-0000-4000-8000-0000000{suffix}"),
                    "resourceVersion": "1234",
                    "creationTimestamp": "2024-01-02T03:04:05Z",
                    "labels": {"sealedsecrets.bitnami.com/sealed-secrets-key": "active"},
                    "managedFields": [{"manager": "controller", "operation": "Update", "apiVersion": "v1",
                                       "time": "2024-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                                       "fieldsV1": {"f:data": {}}}],
                },
                "data": {
                    "tls.crt": STANDARD.encode(std::fs::read(&crt).unwrap()),
                    "tls.key": STANDARD.encode(&key_pem),
                },
            }));
        }
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items});
        keys.write("main.key", &serde_yaml_ng::to_string(&list).unwrap());
        // only the old key, as a single exported Secret
        keys.write("old.key", &serde_yaml_ng::to_string(&list["items"][0]).unwrap());
        keys
    })
}

/// A Bitnami SealedSecret made by kubesealpy (YAML), labelled `app: shop`.
fn kubesealpy(
    cert: &str,
    name: &str,
    namespace: &str,
    scope: &str,
    key: &str,
    value: &str,
) -> String {
    sealers::kubesealpy(
        Path::new(cert),
        name,
        namespace,
        scope,
        &[(key, value)],
        json!({"app": "shop"}),
    )
}

/// The scope annotation kubesealpy writes for a scope.
fn scope_of(sealed: &Value) -> &str {
    let annotations = &sealed["metadata"]["annotations"];
    if annotations["sealedsecrets.bitnami.com/cluster-wide"] == "true" {
        "cluster-wide"
    } else if annotations["sealedsecrets.bitnami.com/namespace-wide"] == "true" {
        "namespace-wide"
    } else {
        "strict"
    }
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn decoded(secret: &Value, key: &str) -> String {
    let value = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no data.{key} in {secret}"));
    String::from_utf8(STANDARD.decode(value).unwrap()).unwrap()
}

/// An age identity file and its recipient (`secretsync keygen`).
fn age_identity(dir: &tempfile::TempDir) -> (String, String) {
    let path = dir.path().join("age.key").display().to_string();
    let recipient = ok(secretsync(&["keygen", "-o", &path])).trim().to_string();
    (path, recipient)
}

/// `unseal --bitnami-key`, `reseal --from-bitnami`, then the age result's
/// `unseal -i`: each gives `value` under `key`.
fn assert_decrypts(sealed_file: &str, key_file: &str, name: &str, key: &str, value: &str) {
    let secret = yaml(&ok(secretsync(&[
        "unseal",
        "--bitnami-key",
        key_file,
        "-f",
        sealed_file,
    ])));
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["name"], name);
    assert_eq!(decoded(&secret, key), value);
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["apiVersion"],
        "bitnami.com/v1alpha1"
    );

    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = age_identity(&dir);
    let resealed = ok(secretsync(&[
        "reseal",
        "--from-bitnami",
        key_file,
        "-f",
        sealed_file,
        "-r",
        &recipient,
    ]));
    assert_no_value(&resealed);
    let age = yaml(&resealed);
    assert_eq!(age["apiVersion"], "secretsync.io/v1");
    assert_eq!(age["kind"], "SealedSecret");
    let bitnami = yaml(&std::fs::read_to_string(sealed_file).unwrap());
    assert_eq!(age["spec"]["scope"], scope_of(&bitnami));
    assert_eq!(
        age["metadata"]["namespace"],
        bitnami["metadata"]["namespace"]
    );
    let age_file = dir.path().join("age.yaml");
    std::fs::write(&age_file, &resealed).unwrap();
    let plain = yaml(&ok(secretsync(&[
        "unseal",
        "-i",
        &identity,
        "-f",
        age_file.to_str().unwrap(),
    ])));
    assert_eq!(decoded(&plain, key), value);
}

#[test]
fn kubesealpy_values_of_every_scope_decrypt() {
    let keys = keys();
    for (scope, value) in [
        ("strict", "kubesealpy-strict-pw"),
        ("namespace-wide", "kubesealpy-ns-wide-pw"),
        ("cluster-wide", "kubesealpy-cluster-wide-pw"),
    ] {
        let sealed = kubesealpy(
            &keys.arg("new.crt"),
            "db",
            "team-a",
            scope,
            "password",
            value,
        );
        let file = keys.write(&format!("kubesealpy-{scope}.yaml"), &sealed);
        assert_decrypts(&file, &keys.arg("main.key"), "db", "password", value);
        // and with the PEM key alone, as kubeseal --recovery-private-key takes it
        assert_decrypts(&file, &keys.arg("new.pem"), "db", "password", value);
    }
}

#[test]
fn linode_namespace_wide_values_decrypt() {
    let keys = keys();
    let ciphertext = sealers::linode(&keys.path("old.pub.pem"), "team-b", "linode-ns-wide-pw");
    let manifest = json!({
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "api", "namespace": "team-b",
                     "annotations": {"sealedsecrets.bitnami.com/namespace-wide": "true"}},
        "spec": {"encryptedData": {"token": ciphertext},
                 "template": {"metadata": {"name": "api", "namespace": "team-b"}, "type": "Opaque"}},
    });
    let file = keys.write("linode.yaml", &serde_yaml_ng::to_string(&manifest).unwrap());
    assert_decrypts(
        &file,
        &keys.arg("main.key"),
        "api",
        "token",
        "linode-ns-wide-pw",
    );
    // namespace-wide: another name in the same namespace decrypts too
    let mut renamed = manifest.clone();
    renamed["metadata"]["name"] = json!("other");
    let file = keys.write(
        "linode-renamed.yaml",
        &serde_yaml_ng::to_string(&renamed).unwrap(),
    );
    assert_decrypts(
        &file,
        &keys.arg("old.key"),
        "other",
        "token",
        "linode-ns-wide-pw",
    );
}

#[test]
fn an_old_and_a_renewed_key_both_decrypt() {
    let keys = keys();
    let old = kubesealpy(
        &keys.arg("old.crt"),
        "legacy",
        "team-a",
        "strict",
        "password",
        "old-key-pw",
    );
    let new = kubesealpy(
        &keys.arg("new.crt"),
        "current",
        "team-a",
        "strict",
        "password",
        "renewed-key-pw",
    );
    let config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  greeting: hello # kept as written\n";
    let file = keys.write("both.yaml", &format!("{old}---\n{config_map}---\n{new}"));
    let secrets = documents(&ok(secretsync(&[
        "unseal",
        "--bitnami-key",
        &keys.arg("main.key"),
        "-f",
        &file,
    ])));
    assert_eq!(secrets.len(), 2);
    assert_eq!(decoded(&secrets[0], "password"), "old-key-pw");
    assert_eq!(decoded(&secrets[1], "password"), "renewed-key-pw");
    // the same from two key files
    let secrets = documents(&ok(secretsync(&[
        "unseal",
        "--bitnami-key",
        &keys.arg("old.key"),
        "--bitnami-key",
        &keys.arg("new.pem"),
        "-f",
        &file,
    ])));
    assert_eq!(decoded(&secrets[1], "password"), "renewed-key-pw");

    // reseal: both converted, the ConfigMap passed through as written
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = age_identity(&dir);
    let resealed = ok(secretsync(&[
        "reseal",
        "--from-bitnami",
        &keys.arg("main.key"),
        "-f",
        &file,
        "-r",
        &recipient,
    ]));
    assert!(resealed.contains(config_map), "{resealed}");
    let converted = documents(&resealed);
    assert_eq!(converted.len(), 3);
    assert_eq!(converted[0]["apiVersion"], "secretsync.io/v1");
    assert_eq!(converted[1]["kind"], "ConfigMap");
    assert_eq!(converted[2]["metadata"]["name"], "current");
    let one = dir.path().join("current.yaml");
    std::fs::write(&one, serde_yaml_ng::to_string(&converted[2]).unwrap()).unwrap();
    let plain = yaml(&ok(secretsync(&[
        "unseal",
        "-i",
        &identity,
        "-f",
        one.to_str().unwrap(),
    ])));
    assert_eq!(decoded(&plain, "password"), "renewed-key-pw");

    // with the old key only, the renewed key's value is refused, by name
    let stderr = failure(secretsync(&[
        "unseal",
        "--bitnami-key",
        &keys.arg("old.key"),
        "-f",
        &file,
    ]));
    assert!(
        stderr.contains("document 3 (SealedSecret team-a/current): spec.encryptedData.password: no key could decrypt secret (1 key tried"),
        "{stderr}"
    );
    assert!(stderr.contains("old.key"), "{stderr}");
    assert!(!stderr.contains("document 1"), "{stderr}");
}

#[test]
fn a_value_moved_to_another_namespace_or_altered_is_refused() {
    let keys = keys();
    let sealed = kubesealpy(
        &keys.arg("new.crt"),
        "db",
        "team-a",
        "strict",
        "password",
        "kubesealpy-strict-pw",
    );
    let mut moved = yaml(&sealed);
    moved["metadata"]["namespace"] = json!("team-b");
    let file = keys.write("moved.yaml", &serde_yaml_ng::to_string(&moved).unwrap());
    let stderr = failure(secretsync(&[
        "unseal",
        "--bitnami-key",
        &keys.arg("main.key"),
        "-f",
        &file,
    ]));
    assert!(
        stderr.contains("(SealedSecret team-b/db): spec.encryptedData.password: no key could decrypt secret (2 keys tried"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_, recipient) = age_identity(&dir);
    let stderr = failure(secretsync(&[
        "reseal",
        "--from-bitnami",
        &keys.arg("main.key"),
        "-f",
        &file,
        "-r",
        &recipient,
    ]));
    assert!(
        stderr.contains("spec.encryptedData.password: no key could decrypt"),
        "{stderr}"
    );
    assert!(stderr.contains("main.key"), "{stderr}");

    let mut altered = yaml(&sealed);
    let mut bytes = STANDARD
        .decode(
            altered["spec"]["encryptedData"]["password"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    altered["spec"]["encryptedData"]["password"] = json!(STANDARD.encode(&bytes));
    let file = keys.write("altered.yaml", &serde_yaml_ng::to_string(&altered).unwrap());
    let stderr = failure(secretsync(&[
        "unseal",
        "--bitnami-key",
        &keys.arg("main.key"),
        "-f",
        &file,
    ]));
    assert!(
        stderr.contains("spec.encryptedData.password: the sealed value was altered: key ")
            && stderr.contains("main.key, item 2 (Secret kube-system/sealed-secrets-keyfghij) opened its session key"),
        "{stderr}"
    );
}

#[test]
fn exported_keys_import_and_check() {
    let keys = keys();
    let output = secretsync(&["keys", "import-bitnami", "-f", &keys.arg("main.key")]);
    let stderr = text(&output.stderr);
    let manifests = documents(&ok(output));
    assert_eq!(manifests.len(), 2, "{manifests:?}");
    let exported = yaml(&std::fs::read_to_string(keys.path("main.key")).unwrap());
    for (secret, original) in manifests.iter().zip(exported["items"].as_array().unwrap()) {
        assert_eq!(secret["apiVersion"], "v1");
        assert_eq!(secret["kind"], "Secret");
        assert_eq!(secret["type"], "kubernetes.io/tls");
        assert_eq!(secret["metadata"]["namespace"], "secretsync");
        assert_eq!(secret["metadata"]["name"], original["metadata"]["name"]);
        assert_eq!(
            secret["metadata"]["labels"],
            json!({"sealedsecrets.bitnami.com/sealed-secrets-key": "active"})
        );
        assert_eq!(secret["data"]["tls.crt"], original["data"]["tls.crt"]);
        assert!(decoded(secret, "tls.key").contains("PRIVATE KEY"));
        let metadata = secret["metadata"].as_object().unwrap();
        for gone in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "ownerReferences",
            "managedFields",
        ] {
            assert!(!metadata.contains_key(gone), "{gone} in {secret}");
        }
    }
    // one line a key: source, size, validity, the fingerprint ssh-keygen gives
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("main.key, item 1 (Secret kube-system/sealed-secrets-keyabcde): RSA 2048 bits, certificate valid "), "{stderr}");
    let ssh_public = run(
        Path::new("ssh-keygen"),
        &["-i", "-m", "PKCS8", "-f", &keys.arg("new.pub.pem")],
        None,
    );
    assert!(ssh_public.status.success(), "{}", text(&ssh_public.stderr));
    let ssh_file = keys.write("new.ssh.pub", &text(&ssh_public.stdout));
    let fingerprint = text(&run(Path::new("ssh-keygen"), &["-l", "-f", &ssh_file], None).stdout);
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap();
    assert!(lines[1].ends_with(fingerprint), "{stderr} / {fingerprint}");

    // what was imported is a key file itself (a List would be too)
    let imported = keys.write(
        "imported.yaml",
        &serde_yaml_ng::to_string(&manifests[0]).unwrap(),
    );
    let good = keys.write(
        "good.yaml",
        &kubesealpy(
            &keys.arg("old.crt"),
            "db",
            "team-a",
            "namespace-wide",
            "password",
            "kubesealpy-ns-wide-pw",
        ),
    );
    let stdout = ok(secretsync(&[
        "keys",
        "import-bitnami",
        "-f",
        &imported,
        "--check",
        &good,
    ]));
    assert_eq!(documents(&stdout).len(), 1);

    // --check: a good file and a bad one; nothing printed, exit 1
    let bad = keys.write(
        "bad.yaml",
        &kubesealpy(
            &keys.arg("new.crt"),
            "db",
            "team-a",
            "strict",
            "password",
            "kubesealpy-strict-pw",
        ),
    );
    let output = secretsync(&[
        "keys",
        "import-bitnami",
        "-f",
        &imported,
        "--check",
        &good,
        &bad,
    ]);
    assert!(output.stdout.is_empty());
    let stderr = failure(output);
    assert!(
        stderr.contains("good.yaml, document 1 (SealedSecret team-a/db): OK"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.yaml, document 1 (SealedSecret team-a/db): spec.encryptedData.password: no key could decrypt secret (1 key tried"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 sealed manifest did not decrypt"),
        "{stderr}"
    );

    // a PEM file: a name from the fingerprint, the certificate paired with its key
    let pem = format!(
        "{}{}",
        std::fs::read_to_string(keys.path("old.crt")).unwrap(),
        std::fs::read_to_string(keys.path("old.pem")).unwrap()
    );
    let pem_file = keys.write("old-with-cert.pem", &pem);
    let secret = yaml(&ok(secretsync(&[
        "keys",
        "import-bitnami",
        "-f",
        &pem_file,
        "--namespace",
        "ops",
    ])));
    assert!(
        secret["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("sealed-secrets-key-")
    );
    assert_eq!(secret["metadata"]["namespace"], "ops");
    assert_eq!(
        decoded(&secret, "tls.crt"),
        std::fs::read_to_string(keys.path("old.crt")).unwrap()
    );
}

#[test]
fn flags_say_which_keys_are_needed() {
    let stderr = text(&secretsync(&["unseal", "-f", "x.yaml"]).stderr);
    assert!(
        stderr.contains("--identity") && stderr.contains("--bitnami-key"),
        "{stderr}"
    );
    let stderr = text(
        &secretsync(&[
            "reseal",
            "-f",
            "x.yaml",
            "-i",
            "id",
            "--from-bitnami",
            "k",
            "-r",
            "age1x",
        ])
        .stderr,
    );
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let stderr = text(&secretsync(&["reseal", "-f", "x.yaml", "-r", "age1x"]).stderr);
    assert!(stderr.contains("--from-bitnami"), "{stderr}");
    // a key file that is no key file names itself and the item
    let keys = keys();
    let bad = keys.write("cm.key", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: nokey}\n  data: {}\n");
    let stderr = failure(secretsync(&["keys", "import-bitnami", "-f", &bad]));
    assert!(
        stderr.contains("cm.key, item 1 (Secret nokey): the Secret has no tls.key"),
        "{stderr}"
    );
}
