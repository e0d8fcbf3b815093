//! Sealed secrets through the CLI, and interop with the reference age
//! implementation (Debian's `age`, installed by .ci/run).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is installed (see .ci/run): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn secretsync(args: &[&str], stdin: Option<&[u8]>) -> Output {
    run(env!("CARGO_BIN_EXE_secretsync"), args, stdin)
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn failure(output: Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected a failure: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

/// A secretsync identity: its file and its recipient.
fn keygen(dir: &Dir, name: &str) -> (PathBuf, String) {
    let path = dir.path(name);
    let recipient = ok(secretsync(&["keygen", "-o", path.to_str().unwrap()], None))
        .trim()
        .to_string();
    (path, recipient)
}

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: team\n  labels: {app: shop}\ntype: kubernetes.io/basic-auth\nstringData:\n  username: app\n  password: S3aled-pw\n";

fn sealed_data(text: &str) -> Value {
    let value: Value = serde_yaml_ng::from_str(text).unwrap();
    value["spec"]["encryptedData"].clone()
}

/// The error `unseal` gives (it must fail).
fn unseal_failure(sealed: &Path, identity: &Path) -> String {
    failure(secretsync(
        &[
            "unseal",
            "-i",
            identity.to_str().unwrap(),
            "-f",
            sealed.to_str().unwrap(),
        ],
        None,
    ))
}

fn unsealed(sealed: &Path, identity: &Path) -> Value {
    let out = ok(secretsync(
        &[
            "unseal",
            "-i",
            identity.to_str().unwrap(),
            "-f",
            sealed.to_str().unwrap(),
            "-o",
            "json",
        ],
        None,
    ));
    serde_json::from_str(&out).unwrap()
}

fn decoded(secret: &Value, key: &str) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"][key].as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn keygen_seal_and_unseal_round_trip() {
    let dir = Dir::new();
    let (identity, recipient) = keygen(&dir, "cluster.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(recipient.starts_with("age1"), "{recipient}");

    let sealed = ok(secretsync(
        &["seal", "-r", &recipient],
        Some(SECRET.as_bytes()),
    ));
    assert!(!sealed.contains("S3aled-pw"));
    let manifest: Value = serde_yaml_ng::from_str(&sealed).unwrap();
    assert_eq!(manifest["kind"], "SealedSecret");
    assert_eq!(manifest["spec"]["scope"], "strict");
    assert_eq!(
        manifest["spec"]["template"]["type"],
        "kubernetes.io/basic-auth"
    );
    assert_eq!(
        manifest["spec"]["template"]["metadata"]["labels"]["app"],
        "shop"
    );
    let data = &manifest["spec"]["encryptedData"];
    assert!(
        data["password"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
    );

    let path = dir.write("sealed.yaml", &sealed);
    let secret = unsealed(&path, &identity);
    assert_eq!(decoded(&secret, "password"), "S3aled-pw");
    assert_eq!(decoded(&secret, "username"), "app");
    assert_eq!(secret["type"], "kubernetes.io/basic-auth");

    // kubectl's own output seals the same way.
    let kubectl = ok(run(
        "kubectl",
        &[
            "create",
            "secret",
            "generic",
            "k",
            "-n",
            "team",
            "--from-literal=a=b",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
        None,
    ));
    let sealed = ok(secretsync(
        &["seal", "-r", &recipient, "-o", "json"],
        Some(kubectl.as_bytes()),
    ));
    let manifest: Value = serde_json::from_str(&sealed).unwrap();
    assert!(manifest["spec"]["encryptedData"]["a"].is_string());
}

#[test]
fn any_one_of_several_recipients_decrypts() {
    let dir = Dir::new();
    let (cluster, cluster_recipient) = keygen(&dir, "cluster.key");
    let (backup, backup_recipient) = keygen(&dir, "offline-backup.key");
    let mut ssh = Vec::new();
    for kind in ["ed25519", "rsa"] {
        let key = dir.path(&format!("id_{kind}"));
        ok(run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                kind,
                "-N",
                "",
                "-C",
                "",
                "-f",
                key.to_str().unwrap(),
            ],
            None,
        ));
        ssh.push((
            key.clone(),
            std::fs::read_to_string(key.with_extension("pub"))
                .unwrap()
                .trim()
                .to_string(),
        ));
    }
    let recipients_file = dir.write(
        "recipients.txt",
        &format!("# the team\n{}\n{}\n", ssh[0].1, ssh[1].1),
    );
    let sealed = ok(secretsync(
        &[
            "seal",
            "-r",
            &cluster_recipient,
            "-r",
            &backup_recipient,
            "-R",
            recipients_file.to_str().unwrap(),
        ],
        Some(SECRET.as_bytes()),
    ));
    let path = dir.write("sealed.yaml", &sealed);
    for identity in [cluster, backup, ssh[0].0.clone(), ssh[1].0.clone()] {
        assert_eq!(
            decoded(&unsealed(&path, &identity), "password"),
            "S3aled-pw",
            "{}",
            identity.display()
        );
    }
}

#[test]
fn merge_into_and_reseal_keep_unchanged_ciphertext_byte_for_byte() {
    let dir = Dir::new();
    let (identity, recipient) = keygen(&dir, "cluster.key");
    let sealed = ok(secretsync(
        &["seal", "-r", &recipient],
        Some(SECRET.as_bytes()),
    ));
    let path = dir.write("sealed.yaml", &sealed);
    let before = sealed_data(&sealed);

    // Add one key, replace one: the untouched key keeps its ciphertext.
    let update = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: team}\nstringData: {password: New-pw, token: T0ken}\n";
    ok(secretsync(
        &[
            "seal",
            "-r",
            &recipient,
            "--merge-into",
            path.to_str().unwrap(),
        ],
        Some(update.as_bytes()),
    ));
    let after = sealed_data(&dir.read("sealed.yaml"));
    assert_eq!(
        after["username"], before["username"],
        "untouched key: same bytes"
    );
    assert_ne!(after["password"], before["password"]);
    assert!(after["token"].is_string());
    let secret = unsealed(&path, &identity);
    assert_eq!(decoded(&secret, "password"), "New-pw");
    assert_eq!(decoded(&secret, "token"), "T0ken");
    assert_eq!(decoded(&secret, "username"), "app");

    // With an identity, a key given again with the same value keeps its bytes too.
    let same = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: team}\nstringData: {password: New-pw}\n";
    ok(secretsync(
        &[
            "seal",
            "-r",
            &recipient,
            "-i",
            identity.to_str().unwrap(),
            "--merge-into",
            path.to_str().unwrap(),
        ],
        Some(same.as_bytes()),
    ));
    assert_eq!(sealed_data(&dir.read("sealed.yaml")), after);

    // reseal to the same recipients: the file does not change at all.
    let text = dir.read("sealed.yaml");
    let resealed = ok(secretsync(
        &[
            "reseal",
            "-f",
            path.to_str().unwrap(),
            "-i",
            identity.to_str().unwrap(),
            "-r",
            &recipient,
        ],
        None,
    ));
    assert_eq!(resealed, text);

    // reseal to a new key (rotation): every value re-encrypted, readable by the new key only.
    let (new_identity, new_recipient) = keygen(&dir, "new.key");
    ok(secretsync(
        &[
            "reseal",
            "-f",
            path.to_str().unwrap(),
            "-i",
            identity.to_str().unwrap(),
            "-r",
            &new_recipient,
            "--in-place",
        ],
        None,
    ));
    let rotated = dir.read("sealed.yaml");
    assert_ne!(sealed_data(&rotated)["username"], after["username"]);
    assert_eq!(decoded(&unsealed(&path, &new_identity), "username"), "app");
    let error = unseal_failure(&path, &identity);
    assert!(error.contains("no identity can decrypt it"), "{error}");
}

/// `spec.template.data` comes out of `unseal` rendered, as the controller
/// writes it; `reseal` seals only what was sealed.
#[test]
fn unseal_renders_template_data_and_reseal_keeps_it_a_template() {
    let dir = Dir::new();
    let (identity, recipient) = keygen(&dir, "cluster.key");
    let sealed = ok(secretsync(
        &["seal", "-r", &recipient, "-o", "json"],
        Some(SECRET.as_bytes()),
    ));
    let mut manifest: Value = serde_json::from_str(&sealed).unwrap();
    manifest["spec"]["template"]["data"] = serde_json::json!({
        "dsn": "postgres://{{ .username }}:{{ .password }}@db/shop",
        "username": "{{ .username | upper }}",
    });
    let path = dir.write("sealed.json", &manifest.to_string());

    let secret = unsealed(&path, &identity);
    assert_eq!(decoded(&secret, "dsn"), "postgres://app:S3aled-pw@db/shop");
    assert_eq!(decoded(&secret, "username"), "APP", "a template key wins");
    assert_eq!(decoded(&secret, "password"), "S3aled-pw");
    assert_eq!(secret["type"], "kubernetes.io/basic-auth");

    // `diff` makes the same Secret: against what unseal printed, no change (exit 0).
    let printed = dir.write("unsealed.json", &secret.to_string());
    ok(secretsync(
        &[
            "diff",
            "-f",
            path.to_str().unwrap(),
            "-i",
            identity.to_str().unwrap(),
            "--against",
            printed.to_str().unwrap(),
        ],
        None,
    ));

    let resealed = ok(secretsync(
        &[
            "reseal",
            "-f",
            path.to_str().unwrap(),
            "-i",
            identity.to_str().unwrap(),
            "-r",
            &keygen(&dir, "new.key").1,
            "-o",
            "json",
        ],
        None,
    ));
    let resealed: Value = serde_json::from_str(&resealed).unwrap();
    let keys: Vec<&String> = resealed["spec"]["encryptedData"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        keys,
        ["password", "username"],
        "nothing rendered was sealed"
    );
    assert_eq!(
        resealed["spec"]["template"]["data"],
        manifest["spec"]["template"]["data"]
    );

    // A template that fails names its key, and shows no value in any form.
    manifest["spec"]["template"]["data"] =
        serde_json::json!({"bad": "{{ .password | upper | jwkPublicKeyPem }}"});
    let path = dir.write("bad.json", &manifest.to_string());
    let error = unseal_failure(&path, &identity);
    assert!(
        error.contains("SealedSecret team/db: spec.template.data.bad:"),
        "{error}"
    );
    for shown in ["S3aled-pw", "S3ALED-PW", "UzNhbGVkLXB3"] {
        assert!(!error.contains(shown), "{error}");
    }
}

/// The envelope's plaintext, as README documents it.
fn plaintext(namespace: &str, name: &str, key: &str, value: &str) -> String {
    format!(
        "secretsync.io/sealed v1\nscope: strict\nnamespace: {namespace}\nname: {name}\nkey: {key}\n\n{value}"
    )
}

fn sealed_secret_with(envelope: &str) -> String {
    let indented: String = envelope.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "apiVersion: secretsync.io/v1\nkind: SealedSecret\nmetadata: {{name: db, namespace: team}}\nspec:\n  encryptedData:\n    password: |\n{indented}"
    )
}

#[test]
fn interoperates_with_the_age_cli_both_ways() {
    let dir = Dir::new();
    // age-keygen's key works with secretsync; age encrypts, secretsync decrypts.
    let age_identity = dir.path("age.key");
    let made = run("age-keygen", &["-o", age_identity.to_str().unwrap()], None);
    let age_recipient = String::from_utf8(made.stderr)
        .unwrap()
        .trim()
        .trim_start_matches("Public key: ")
        .to_string();
    let armored = ok(run(
        "age",
        &["-r", &age_recipient, "-a"],
        Some(plaintext("team", "db", "password", "from-age-cli").as_bytes()),
    ));
    let path = dir.write("from-age.yaml", &sealed_secret_with(&armored));
    assert_eq!(
        decoded(&unsealed(&path, &age_identity), "password"),
        "from-age-cli"
    );

    // Binary age output, through the library.
    let binary = run(
        "age",
        &["-r", &age_recipient],
        Some(plaintext("team", "db", "password", "binary-age").as_bytes()),
    )
    .stdout;
    let identities = secretsync::sealed::parse_identities(
        &std::fs::read_to_string(&age_identity).unwrap(),
        "age.key",
    )
    .unwrap();
    let binding = secretsync::sealed::Binding {
        scope: secretsync::api::SealedScope::Strict,
        namespace: "team".into(),
        name: "db".into(),
        key: "password".into(),
    };
    let value = secretsync::sealed::unseal(&binary, &identities, &binding).unwrap();
    assert_eq!(value.expose(), b"binary-age");

    // secretsync's key and envelope work with age: it decrypts to the documented plaintext.
    let (our_identity, our_recipient) = keygen(&dir, "ours.key");
    let envelope = ok(secretsync(
        &[
            "seal",
            "--raw",
            "--namespace",
            "team",
            "--name",
            "db",
            "--key",
            "password",
            "-r",
            &our_recipient,
        ],
        Some(b"from-secretsync"),
    ));
    let decrypted = ok(run(
        "age",
        &["-d", "-i", our_identity.to_str().unwrap()],
        Some(envelope.as_bytes()),
    ));
    assert_eq!(
        decrypted,
        plaintext("team", "db", "password", "from-secretsync")
    );

    // SSH keys: age encrypts to an ssh-ed25519 key, secretsync decrypts with it; and back.
    let ssh = dir.path("id_ed25519");
    ok(run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "",
            "-f",
            ssh.to_str().unwrap(),
        ],
        None,
    ));
    let ssh_public = std::fs::read_to_string(ssh.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();
    let armored = ok(run(
        "age",
        &["-R", ssh.with_extension("pub").to_str().unwrap(), "-a"],
        Some(plaintext("team", "db", "password", "ssh-age").as_bytes()),
    ));
    let path = dir.write("ssh.yaml", &sealed_secret_with(&armored));
    assert_eq!(decoded(&unsealed(&path, &ssh), "password"), "ssh-age");
    let envelope = ok(secretsync(
        &[
            "seal",
            "--raw",
            "--namespace",
            "team",
            "--name",
            "db",
            "--key",
            "k",
            "-r",
            &ssh_public,
        ],
        Some(b"ssh-ours"),
    ));
    let decrypted = ok(run(
        "age",
        &["-d", "-i", ssh.to_str().unwrap()],
        Some(envelope.as_bytes()),
    ));
    assert!(decrypted.ends_with("\n\nssh-ours"), "{decrypted}");
}

#[test]
fn each_failure_has_its_own_clear_error() {
    let dir = Dir::new();
    let (identity, recipient) = keygen(&dir, "cluster.key");
    let (other, _) = keygen(&dir, "other.key");
    let sealed = ok(secretsync(
        &["seal", "-r", &recipient],
        Some(SECRET.as_bytes()),
    ));
    let envelope = sealed_data(&sealed)["password"]
        .as_str()
        .unwrap()
        .to_string();
    let unseal_text =
        |name: &str, text: &str, identity: &Path| unseal_failure(&dir.write(name, text), identity);

    // Flip one character in the middle of the ciphertext body.
    let mut lines: Vec<String> = envelope.lines().map(str::to_string).collect();
    let middle = lines.len() - 3;
    let flipped: String = lines[middle]
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 10 {
                if c == 'A' { 'B' } else { 'A' }
            } else {
                c
            }
        })
        .collect();
    lines[middle] = flipped;
    let cases = [
        (
            "tampered",
            sealed_secret_with(&lines.join("\n")),
            identity.clone(),
            "tampered with or is corrupt",
        ),
        (
            "wrong identity",
            sealed_secret_with(&envelope),
            other.clone(),
            "no identity can decrypt it",
        ),
        (
            "moved namespace",
            sealed_secret_with(&envelope).replace("namespace: team", "namespace: elsewhere"),
            identity.clone(),
            "sealed for namespace \"team\", not \"elsewhere\"",
        ),
        (
            "renamed",
            sealed_secret_with(&envelope).replace("name: db", "name: copy"),
            identity.clone(),
            "sealed for the SealedSecret named \"db\", not \"copy\"",
        ),
        (
            "renamed key",
            sealed_secret_with(&envelope).replace("    password: |", "    stolen: |"),
            identity.clone(),
            "sealed for key \"password\", not \"stolen\"",
        ),
        (
            "truncated armor",
            sealed_secret_with(&envelope.lines().take(3).collect::<Vec<_>>().join("\n")),
            identity.clone(),
            "truncated or malformed",
        ),
    ];
    for (what, text, identity, expected) in cases {
        let error = unseal_text(
            &format!("{}.yaml", what.replace(' ', "-")),
            &text,
            &identity,
        );
        assert!(
            error.contains(expected),
            "{what}:\n  want: {expected}\n  got: {error}"
        );
        assert!(
            error.contains("spec.encryptedData."),
            "{what}: names the key: {error}"
        );
        assert!(!error.contains("S3aled-pw"));
    }

    let error = failure(secretsync(
        &["seal", "-r", "not-a-key"],
        Some(SECRET.as_bytes()),
    ));
    assert!(
        error.contains(
            "\"not-a-key\" is not an age X25519 (age1...) or SSH (ssh-ed25519, ssh-rsa) public key"
        ),
        "{error}"
    );
    let empty = dir.write("empty.key", "# nothing here\n");
    let path = dir.write("ok.yaml", &sealed);
    let error = unseal_failure(&path, &empty);
    assert!(
        error.contains("empty.key: no age or SSH identity found"),
        "{error}"
    );
    let error = failure(secretsync(
        &["seal", "-r", &recipient],
        Some(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"),
    ));
    assert!(error.contains("expected a Secret manifest"), "{error}");
}
