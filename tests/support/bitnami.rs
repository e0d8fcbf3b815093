//! Bitnami Sealed Secrets' side, for tests: keys as its controller makes
//! them (by the `openssl` CLI), and values sealed by implementations nobody
//! here wrote: PyPI `kubesealpy` and npm `@linode/kubeseal-encrypt`
//! (scripts/test installs both).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::peers;

/// A 2048-bit RSA key, its self-signed certificate and its public key, as files.
pub struct Key {
    pub key_file: PathBuf,
    pub cert_file: PathBuf,
    pub public_file: PathBuf,
}

impl Key {
    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key_file).unwrap()
    }

    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert_file).unwrap()
    }
}

pub fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}", peers::missing(Path::new("openssl"), e)));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `DIR/NAME.pem` (PKCS#1, as Bitnami's controller writes keys, with
/// `pkcs1`; else PKCS#8), `NAME.crt` and `NAME.pub.pem`.
pub fn key(dir: &Path, name: &str, pkcs1: bool) -> Key {
    let path = |suffix: &str| dir.join(format!("{name}.{suffix}"));
    let (key_file, cert_file, public_file) = (path("pem"), path("crt"), path("pub.pem"));
    let arg = |p: &PathBuf| p.display().to_string();
    let (key, cert, public) = (arg(&key_file), arg(&cert_file), arg(&public_file));
    let mut genrsa = vec!["genrsa", "-out", &key];
    if pkcs1 {
        genrsa.push("-traditional");
    }
    genrsa.push("2048");
    openssl(&genrsa);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &key,
        "-subj",
        "/O=sealed-secret/CN=sealed-secret",
        "-days",
        "3650",
        "-out",
        &cert,
    ]);
    openssl(&["x509", "-in", &cert, "-pubkey", "-noout", "-out", &public]);
    let key = Key {
        key_file,
        cert_file,
        public_file,
    };
    let form = if pkcs1 {
        "-----BEGIN RSA PRIVATE KEY-----"
    } else {
        "-----BEGIN PRIVATE KEY-----"
    };
    assert!(key.key_pem().starts_with(form), "openssl wrote {form}");
    key
}

/// A Bitnami SealedSecret sealed by kubesealpy to the certificate `cert`,
/// with `scope` `strict`, `namespace-wide` or `cluster-wide`: its YAML.
pub fn kubesealpy(
    cert: &Path,
    name: &str,
    namespace: &str,
    scope: &str,
    data: &[(&str, &str)],
    labels: Value,
) -> String {
    let script = r#"
import json, sys
from kubesealpy import Sealer, SealingScope
cert, name, namespace, scope, data, labels = sys.argv[1:7]
sealer = Sealer.from_certificate_pem(open(cert, "rb").read())
sealed = sealer.seal(name=name, namespace=namespace,
                     data={k: v.encode() for k, v in json.loads(data).items()},
                     scope=getattr(SealingScope, scope.upper().replace("-", "_")),
                     labels=json.loads(labels) or None)
print(sealed.to_yaml())
"#;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    let python = peers::python();
    let output = Command::new(&python)
        .args(["-c", script])
        .arg(cert)
        .args([name, namespace, scope])
        .arg(Value::Object(data).to_string())
        .arg(labels.to_string())
        .output()
        .unwrap_or_else(|e| panic!("{}", peers::missing(&python, e)));
    assert!(
        output.status.success(),
        "{}",
        peers::missing(
            &python,
            format!(
                "kubesealpy failed (pip install kubesealpy==1.0.1): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        )
    );
    String::from_utf8(output.stdout).unwrap()
}

/// One value sealed by @linode/kubeseal-encrypt to the public key in
/// `public_pem` (namespace-wide: its only scope): the base64 ciphertext.
pub fn linode(public_pem: &Path, namespace: &str, value: &str) -> String {
    let node = peers::node();
    let package = peers::node_modules()
        .join("@linode")
        .join("kubeseal-encrypt");
    assert!(
        package.is_dir(),
        "{}",
        peers::missing(
            &package,
            "not installed (npm install --prefix .peers/node @linode/kubeseal-encrypt@1.0.1)"
        )
    );
    let version = Command::new(&node)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{}", peers::missing(&node, e)));
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 18,
        "{}",
        peers::missing(
            &node,
            format!(
                "@linode/kubeseal-encrypt needs Node >= 20 (18 with a flag); this is {version}"
            )
        )
    );
    // The package encrypts with globalThis.crypto (Web Crypto): a global
    // from Node 19 on; Node 18 (Debian 12's) has it behind a flag.
    let flags: &[&str] = if major == 18 {
        &["--experimental-global-webcrypto"]
    } else {
        &[]
    };
    let script = r#"
const [modulePath, pemFile, namespace, value] = process.argv.slice(1);
const { encryptSecretItem } = require(modulePath);
const pem = require("fs").readFileSync(pemFile, "utf8");
encryptSecretItem(pem, namespace, value).then((b64) => process.stdout.write(b64),
  (e) => { console.error(String(e)); process.exit(1); });
"#;
    let output = Command::new(&node)
        .args(flags)
        .args(["-e", script])
        .arg(&package)
        .arg(public_pem)
        .args([namespace, value])
        .output()
        .unwrap_or_else(|e| panic!("{}", peers::missing(&node, e)));
    assert!(
        output.status.success(),
        "{}",
        peers::missing(
            &node,
            format!(
                "@linode/kubeseal-encrypt failed (it needs Node >= 20, or 18 with --experimental-global-webcrypto): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        )
    );
    String::from_utf8(output.stdout).unwrap()
}
