//! Bitnami Sealed Secrets' envelope (`bitnami.com/v1alpha1`), so that a cluster
//! moving off Bitnami's controller keeps its sealed manifests and its keys.
//!
//! One sealed value is Bitnami's "hybrid" ciphertext: a 2-byte big-endian
//! length N, N bytes of RSA-OAEP (SHA-256, MGF1-SHA-256) encrypting a fresh
//! 32-byte AES-256 session key under the scope's label (`namespace/name`,
//! `namespace` or empty), then AES-256-GCM of the value with a zero nonce (the
//! session key is used once) and no associated data. `spec.encryptedData` holds
//! one such ciphertext per key (base64); the deprecated `spec.data` holds one
//! over the whole Secret as JSON. Everything cryptographic is RustCrypto's
//! (`rsa`, `aes-gcm`).
//!
//! Keys are the old controller's: Secrets of type `kubernetes.io/tls` labelled
//! `sealedsecrets.bitnami.com/sealed-secrets-key`, exported with
//! `kubectl get secret -n kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`,
//! or PEM files ([`parse_keys`] reads every shape).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rand::RngCore;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::manifest::{ManifestError, SealTarget, seal_values};
use crate::SecretValue;
use crate::api::{
    BITNAMI_CLUSTER_WIDE, BITNAMI_GROUP, BITNAMI_KEY_LABEL, BITNAMI_NAMESPACE_WIDE,
    BITNAMI_SKIP_SET_OWNER_REFERENCES, BITNAMI_VERSION, BitnamiScope, BitnamiSealedSecret,
    SealedScope, SealedSecret, SealedSecretSpec, SealedSecretTemplate, TemplateMetadata,
};
use crate::template::{Context, RenderLimits, Template};

/// The AES-256 session key's length.
const SESSION_KEY_BYTES: usize = 32;
/// The AES-GCM nonce: all zero, as Bitnami uses it (one key, one message).
const ZERO_NONCE: [u8; 12] = [0; 12];
/// kubectl's copy of the applied object: never carried over.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Reading keys or sealing failed (no value is ever part of the message).
#[derive(Debug, thiserror::Error)]
pub enum BitnamiError {
    #[error("{source_name}: {message}")]
    Key {
        source_name: String,
        message: String,
    },
    #[error("sealing failed: {0}")]
    Encrypt(String),
}

fn key_error(source: &str, message: impl Into<String>) -> BitnamiError {
    BitnamiError::Key {
        source_name: source.to_string(),
        message: message.into(),
    }
}

/// One sealed value would not decrypt. The messages say why, never what.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error("not base64 (a sealed value is the base64 of Bitnami's ciphertext)")]
    NotBase64,
    #[error("SealedSecret data is too short")]
    TooShort,
    #[error("no Bitnami key to decrypt with")]
    NoKeys,
    #[error(
        "no key could decrypt secret ({tried} {} tried): it was sealed to another key, or for another namespace, name or scope",
        if *tried == 1 { "key" } else { "keys" }
    )]
    NoKeyDecrypts { tried: usize },
    #[error(
        "the sealed value was altered: key {key} opened its session key, but AES-GCM authentication failed"
    )]
    Tampered { key: String },
    #[error("the scope label is not UTF-8")]
    BadLabel,
    #[error(
        "not tried: this SealedSecret needed more than {MAX_KEY_TRIALS} RSA decryptions (values times keys tried); split it into several"
    )]
    TooMuchWork,
}

/// RSA decryptions one SealedSecret may cost (each about 15 ms at 4096 bits
/// here): a value sealed to the key that worked last costs one, to another of
/// K keys up to K. A bound in work, not time, so that a large SealedSecret
/// never fails on a busy node only, while one tenant's object cannot hold a
/// blocking thread for minutes.
pub const MAX_KEY_TRIALS: usize = 1000;

/// A SealedSecret that does not unseal: every failing field with why.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.fields.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
pub struct UnsealFailure {
    fields: Vec<(String, String)>,
}

impl UnsealFailure {
    fn one(field: &str, message: impl Into<String>) -> UnsealFailure {
        UnsealFailure {
            fields: vec![(field.to_string(), message.into())],
        }
    }

    /// `(field, message)`, e.g. `("spec.encryptedData.password", "no key could decrypt secret ...")`.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }
}

/// One imported private key; `source` names it in errors
/// ("Secret kube-system/sealed-secrets-keyabcde", "main.key, key 2").
pub struct BitnamiKey {
    pub source: String,
    private: RsaPrivateKey,
    public: RsaPublicKey,
    bits: usize,
    /// The Secret it came from, if it came from one.
    secret_name: Option<String>,
    /// The certificate (PEM) that goes with it, if one came with it.
    certificate: Option<String>,
}

impl std::fmt::Debug for BitnamiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitnamiKey")
            .field("source", &self.source)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl BitnamiKey {
    fn new(private: RsaPrivateKey, source: String) -> Result<BitnamiKey, BitnamiError> {
        private
            .validate()
            .map_err(|e| key_error(&source, format!("not a valid RSA private key: {e}")))?;
        let public = private.to_public_key();
        let bits = public.n().bits();
        Ok(BitnamiKey {
            source,
            private,
            public,
            bits,
            secret_name: None,
            certificate: None,
        })
    }

    pub fn public_key(&self) -> &rsa::RsaPublicKey {
        &self.public
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The name of the Secret it was read from, if any.
    pub fn secret_name(&self) -> Option<&str> {
        self.secret_name.as_deref()
    }

    /// Its certificate (PEM, `tls.crt`), if one came with it.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate.as_deref()
    }

    /// The private key as PKCS#1 PEM ("RSA PRIVATE KEY"), as Bitnami writes `tls.key`.
    pub fn private_key_pem(&self) -> Result<Zeroizing<String>, BitnamiError> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        self.private
            .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
            .map_err(|e| key_error(&self.source, e.to_string()))
    }

    /// The public key's SHA-256 fingerprint in OpenSSH's form (`SHA256:...`),
    /// the one Bitnami's controller logs for its keys.
    pub fn fingerprint(&self) -> String {
        fn string(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        fn mpint(out: &mut Vec<u8>, bytes: &[u8]) {
            let bytes: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
            if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                let mut padded = vec![0];
                padded.extend_from_slice(&bytes);
                string(out, &padded);
            } else {
                string(out, &bytes);
            }
        }
        let mut wire = Vec::new();
        string(&mut wire, b"ssh-rsa");
        mpint(&mut wire, &self.public.e().to_bytes_be());
        mpint(&mut wire, &self.public.n().to_bytes_be());
        let digest = Sha256::digest(&wire);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }
}

/// The keys tried in turn; remembers which one decrypted last and tries it
/// first next time (several keys: an old one and renewed ones).
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<BitnamiKey>,
    last: AtomicUsize,
}

impl KeyRing {
    pub fn new(keys: Vec<BitnamiKey>) -> KeyRing {
        KeyRing {
            keys,
            last: AtomicUsize::new(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn keys(&self) -> &[BitnamiKey] {
        &self.keys
    }

    /// Indexes in the order to try: the last good key first, then the rest.
    fn order(&self) -> impl Iterator<Item = usize> + '_ {
        let first = self
            .last
            .load(Ordering::Relaxed)
            .min(self.keys.len().saturating_sub(1));
        std::iter::once(first).chain((0..self.keys.len()).filter(move |i| *i != first))
    }
}

/// A private key from one PEM block, if the block is one.
fn private_key_of(block: &pem::Pem, source: &str) -> Result<Option<RsaPrivateKey>, BitnamiError> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    match block.tag() {
        "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(block.contents())
            .map(Some)
            .map_err(|e| key_error(source, format!("not a PKCS#1 RSA private key: {e}"))),
        "PRIVATE KEY" => RsaPrivateKey::from_pkcs8_der(block.contents())
            .map(Some)
            .map_err(|e| {
                key_error(
                    source,
                    format!("not an RSA private key (PKCS#8; Bitnami's keys are RSA): {e}"),
                )
            }),
        "ENCRYPTED PRIVATE KEY" => Err(key_error(
            source,
            "the private key is encrypted: decrypt it first (openssl rsa -in FILE -out PLAIN)",
        )),
        tag if tag.ends_with("PRIVATE KEY") => Err(key_error(
            source,
            format!("a {tag} is not an RSA key: Bitnami's keys are RSA"),
        )),
        _ => Ok(None),
    }
}

/// The certificate among `certificates` whose public key is `key`'s.
fn matching_certificate(key: &RsaPublicKey, certificates: &[pem::Pem]) -> Option<String> {
    use rsa::pkcs8::EncodePublicKey;
    let der = key.to_public_key_der().ok()?;
    certificates
        .iter()
        .find(|c| {
            x509_parser::parse_x509_certificate(c.contents())
                .is_ok_and(|(_, cert)| cert.public_key().raw == der.as_bytes())
        })
        .map(|c| {
            pem::encode_config(
                c,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
        })
}

/// Every private key of a PEM text, each with its certificate if the text
/// has one for it.
fn keys_from_pem(text: &[u8], source: &str) -> Result<Vec<BitnamiKey>, BitnamiError> {
    let blocks =
        pem::parse_many(text).map_err(|e| key_error(source, format!("invalid PEM: {e}")))?;
    let certificates: Vec<pem::Pem> = blocks
        .iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .cloned()
        .collect();
    let private: Vec<&pem::Pem> = blocks
        .iter()
        .filter(|b| b.tag().ends_with("PRIVATE KEY"))
        .collect();
    if private.is_empty() {
        return Err(key_error(
            source,
            "no private key (PEM \"RSA PRIVATE KEY\" or \"PRIVATE KEY\")",
        ));
    }
    let several = private.len() > 1;
    private
        .into_iter()
        .enumerate()
        .map(|(i, block)| {
            let name = if several {
                format!("{source}, key {}", i + 1)
            } else {
                source.to_string()
            };
            let rsa_key = private_key_of(block, &name)?.expect("a private key block");
            let mut key = BitnamiKey::new(rsa_key, name)?;
            key.certificate = matching_certificate(&key.public, &certificates);
            Ok(key)
        })
        .collect()
}

/// A key from a Secret's `tls.key` (the controller reads labelled Secrets).
pub fn key_from_secret(secret: &Secret, source: &str) -> Result<BitnamiKey, BitnamiError> {
    let field = |name: &str| -> Option<Vec<u8>> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(name))
            .map(|v| v.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(name))
                    .map(|v| v.clone().into_bytes())
            })
    };
    let tls_key = Zeroizing::new(
        field("tls.key").ok_or_else(|| key_error(source, "the Secret has no tls.key"))?,
    );
    let mut keys = keys_from_pem(&tls_key, &format!("{source}: tls.key"))?;
    if keys.len() != 1 {
        return Err(key_error(source, "tls.key holds more than one private key"));
    }
    let mut key = keys.remove(0);
    key.source = source.to_string();
    key.secret_name = secret.metadata.name.clone();
    if let Some(crt) = field("tls.crt").filter(|c| !c.is_empty()) {
        key.certificate =
            Some(String::from_utf8(crt).map_err(|_| key_error(source, "tls.crt is not PEM text"))?);
    }
    Ok(key)
}

/// How a Secret of a key file is named in messages.
fn secret_source(file: &str, secret: &Secret, item: Option<usize>) -> String {
    let name = secret.metadata.name.as_deref().unwrap_or("(no name)");
    let object = match secret.metadata.namespace.as_deref() {
        Some(ns) => format!("Secret {ns}/{name}"),
        None => format!("Secret {name}"),
    };
    match item {
        Some(i) => format!("{file}, item {} ({object})", i + 1),
        None => format!("{file}, {object}"),
    }
}

/// Every key in a file as users export them: PEM (one or more private-key
/// blocks; certificate blocks skipped), a Secret, a v1 List of Secrets,
/// multi-document YAML, JSON. Names the file and the item that failed.
pub fn parse_keys(text: &[u8], source: &str) -> Result<Vec<BitnamiKey>, BitnamiError> {
    if text.windows(11).any(|w| w == b"-----BEGIN ") {
        return keys_from_pem(text, source);
    }
    let text = std::str::from_utf8(text)
        .map_err(|_| key_error(source, "neither PEM nor YAML/JSON text"))?;
    let mut keys = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value: serde_json::Value = serde::Deserialize::deserialize(document).map_err(|e| {
            key_error(
                source,
                format!(
                    "invalid YAML: {}",
                    e.to_string().lines().next().unwrap_or("")
                ),
            )
        })?;
        if value.is_null() {
            continue;
        }
        let doc = format!("{source}, document {}", index + 1);
        let kind = value["kind"].as_str().unwrap_or("");
        let (items, listed) = if kind == "List" || kind == "SecretList" {
            (value["items"].as_array().cloned().unwrap_or_default(), true)
        } else if kind == "Secret" {
            (vec![value], false)
        } else {
            return Err(key_error(
                &doc,
                format!(
                    "expected a Secret or a List of Secrets (kubectl get secret -o yaml), found kind {kind:?}"
                ),
            ));
        };
        for (i, item) in items.into_iter().enumerate() {
            let item_kind = item["kind"].as_str().unwrap_or("Secret");
            if item_kind != "Secret" {
                return Err(key_error(
                    &format!("{source}, item {}", i + 1),
                    format!("expected a Secret, found kind {item_kind:?}"),
                ));
            }
            let secret: Secret = crate::api::from_json(item)
                .map_err(|e| key_error(&format!("{source}, item {}", i + 1), e))?;
            let name = secret_source(source, &secret, listed.then_some(i));
            keys.push(key_from_secret(&secret, &name)?);
        }
    }
    if keys.is_empty() {
        return Err(key_error(source, "no keys in it"));
    }
    Ok(keys)
}

fn oaep(label: &[u8]) -> Result<Oaep, String> {
    let label =
        std::str::from_utf8(label).map_err(|_| "the scope label is not UTF-8".to_string())?;
    Ok(Oaep::new_with_label::<Sha256, _>(label))
}

/// Bitnami's HybridEncrypt (tests, benchmark, nothing else in the product).
pub fn encrypt(
    public: &RsaPublicKey,
    plaintext: &[u8],
    label: &[u8],
) -> Result<Vec<u8>, BitnamiError> {
    let mut rng = rand::rngs::OsRng;
    let mut session_key = Zeroizing::new([0u8; SESSION_KEY_BYTES]);
    rng.fill_bytes(session_key.as_mut());
    let rsa_part = public
        .encrypt(
            &mut rng,
            oaep(label).map_err(BitnamiError::Encrypt)?,
            session_key.as_ref(),
        )
        .map_err(|e| BitnamiError::Encrypt(e.to_string()))?;
    let length = u16::try_from(rsa_part.len())
        .map_err(|_| BitnamiError::Encrypt("RSA key too large".into()))?;
    let cipher = Aes256Gcm::new_from_slice(session_key.as_ref()).expect("a 32-byte key");
    let aes_part = cipher
        .encrypt(Nonce::from_slice(&ZERO_NONCE), plaintext)
        .map_err(|_| BitnamiError::Encrypt("AES-GCM failed".into()))?;
    let mut out = Vec::with_capacity(2 + rsa_part.len() + aes_part.len());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&rsa_part);
    out.extend_from_slice(&aes_part);
    Ok(out)
}

/// Bitnami's HybridDecrypt over the ring; errors never contain plaintext.
pub fn decrypt(
    ring: &KeyRing,
    ciphertext: &[u8],
    label: &[u8],
) -> Result<SecretValue, DecryptError> {
    decrypt_within(ring, ciphertext, label, &mut { MAX_KEY_TRIALS })
}

/// [`decrypt`], each key tried taken from `trials_left`.
fn decrypt_within(
    ring: &KeyRing,
    ciphertext: &[u8],
    label: &[u8],
    trials_left: &mut usize,
) -> Result<SecretValue, DecryptError> {
    if ring.is_empty() {
        return Err(DecryptError::NoKeys);
    }
    if ciphertext.len() < 2 {
        return Err(DecryptError::TooShort);
    }
    let rsa_len = u16::from_be_bytes([ciphertext[0], ciphertext[1]]) as usize;
    if ciphertext.len() < 2 + rsa_len {
        return Err(DecryptError::TooShort);
    }
    let (rsa_part, aes_part) = ciphertext[2..].split_at(rsa_len);
    let mut rng = rand::rngs::OsRng;
    let mut tampered = None;
    for index in ring.order() {
        let key = &ring.keys[index];
        *trials_left = trials_left
            .checked_sub(1)
            .ok_or(DecryptError::TooMuchWork)?;
        let padding = oaep(label).map_err(|_| DecryptError::BadLabel)?;
        // Blinded, as Go's DecryptOAEP is (given a random source).
        let Ok(session_key) = key.private.decrypt_blinded(&mut rng, padding, rsa_part) else {
            continue;
        };
        let session_key = Zeroizing::new(session_key);
        let Ok(cipher) = Aes256Gcm::new_from_slice(&session_key) else {
            tampered.get_or_insert_with(|| key.source.clone());
            continue;
        };
        match cipher.decrypt(Nonce::from_slice(&ZERO_NONCE), aes_part) {
            Ok(plain) => {
                ring.last.store(index, Ordering::Relaxed);
                return Ok(SecretValue::new(plain));
            }
            Err(_) => {
                tampered.get_or_insert_with(|| key.source.clone());
            }
        }
    }
    Err(match tampered {
        Some(key) => DecryptError::Tampered { key },
        None => DecryptError::NoKeyDecrypts { tried: ring.len() },
    })
}

/// One base64 sealed value, decrypted.
fn decrypt_base64(
    ring: &KeyRing,
    text: &str,
    label: &[u8],
    trials_left: &mut usize,
) -> Result<SecretValue, DecryptError> {
    // Go's StdEncoding skips line breaks; nothing else.
    let compact: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    let bytes = STANDARD
        .decode(compact)
        .map_err(|_| DecryptError::NotBase64)?;
    decrypt_within(ring, &bytes, label, trials_left)
}

/// What a SealedSecret's sealed fields hold, decrypted.
struct Opened {
    values: BTreeMap<String, SecretValue>,
    /// With the deprecated `spec.data`: the whole sealed Secret.
    whole: Option<Secret>,
}

const BOTH_DATA_FIELDS: &str =
    "cannot use the field 'encryptedData' and the deprecated field 'data' at the same time";

/// Decrypts `spec.encryptedData` (every key, each failure recorded) or the
/// deprecated `spec.data`.
fn open(sealed: &BitnamiSealedSecret, ring: &KeyRing) -> Result<Opened, UnsealFailure> {
    let namespace = sealed.metadata.namespace.clone().unwrap_or_default();
    let name = sealed.metadata.name.clone().unwrap_or_default();
    let label = BitnamiScope::of(sealed.metadata.annotations.as_ref()).label(&namespace, &name);
    if let Some(data) = &sealed.spec.data {
        if !sealed.spec.encrypted_data.is_empty() {
            return Err(UnsealFailure::one("spec.data", BOTH_DATA_FIELDS));
        }
        let plain = decrypt_base64(ring, data, &label, &mut { MAX_KEY_TRIALS })
            .map_err(|e| UnsealFailure::one("spec.data", e.to_string()))?;
        let value: serde_json::Value = serde_json::from_slice(plain.expose())
            .or_else(|_| serde_yaml_ng::from_slice(plain.expose()))
            .map_err(|_| {
                UnsealFailure::one("spec.data", "the decrypted data is not a Secret (JSON)")
            })?;
        let secret: Secret = crate::api::from_json(value).map_err(|e| {
            UnsealFailure::one(
                "spec.data",
                format!("the decrypted data is not a Secret: {e}"),
            )
        })?;
        let values = super::manifest::secret_values(&secret);
        return Ok(Opened {
            values,
            whole: Some(secret),
        });
    }
    let mut values = BTreeMap::new();
    let mut fields = Vec::new();
    let mut trials_left = MAX_KEY_TRIALS;
    for (key, text) in &sealed.spec.encrypted_data {
        match decrypt_base64(ring, text, &label, &mut trials_left) {
            Ok(value) => {
                values.insert(key.clone(), value);
            }
            Err(e) => fields.push((format!("spec.encryptedData.{key}"), e.to_string())),
        }
    }
    if fields.is_empty() {
        Ok(Opened {
            values,
            whole: None,
        })
    } else {
        Err(UnsealFailure { fields })
    }
}

/// The Secret a Bitnami SealedSecret stands for, as Bitnami's Unseal builds
/// it (metadata from the template, name/namespace/ownerReference from the
/// SealedSecret, type, immutable, data, template.data rendered within
/// `limits`; the deprecated spec.data too). Every key is tried; the error
/// lists each failing field (`spec.encryptedData.password: ...`,
/// `spec.template.data.dsn: ...`) and never a value. CPU-heavy: the
/// controller calls it on a blocking thread.
///
/// One difference from Bitnami: a template naming a key that does not exist
/// fails here (as ESO's templates do) where Go's default prints `<no value>`.
pub fn unseal(
    sealed: &BitnamiSealedSecret,
    ring: &KeyRing,
    limits: &RenderLimits,
) -> Result<Secret, UnsealFailure> {
    let template = &sealed.spec.template;
    let (opened, mut fields) = match open(sealed, ring) {
        Ok(opened) => (opened, Vec::new()),
        Err(failure) if sealed.spec.data.is_some() => return Err(failure),
        // Go on to the templates (Bitnami's Unseal reports both kinds of
        // failure), with the failed keys empty as Bitnami leaves them.
        Err(failure) => {
            let mut values = BTreeMap::new();
            for key in sealed.spec.encrypted_data.keys() {
                values.insert(key.clone(), SecretValue::new(Vec::new()));
            }
            (
                Opened {
                    values,
                    whole: None,
                },
                failure.fields,
            )
        }
    };
    let mut secret = match opened.whole {
        Some(whole) => whole,
        None => {
            let mut secret = Secret {
                type_: template.type_.clone(),
                immutable: template.immutable,
                ..Default::default()
            };
            if let Some(meta) = &template.metadata {
                secret.metadata.labels = meta.labels.clone();
                secret.metadata.annotations = meta.annotations.clone();
                secret.metadata.finalizers = meta.finalizers.clone();
            }
            let mut data: BTreeMap<String, ByteString> = opened
                .values
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.expose().to_vec())))
                .collect();
            if let Some(texts) = template.data.as_ref().filter(|t| !t.is_empty()) {
                let mut context = Context::new();
                for (k, v) in &opened.values {
                    context.insert(k.clone(), v.clone());
                }
                let mut budget = limits.start();
                for (key, text) in texts {
                    match Template::parse(text).and_then(|mut t| t.render(&context, &mut budget)) {
                        Ok(rendered) => {
                            data.insert(key.clone(), ByteString(rendered.expose().to_vec()));
                        }
                        Err(e) => fields.push((format!("spec.template.data.{key}"), e.to_string())),
                    }
                }
            }
            secret.data = Some(data);
            secret
        }
    };
    if !fields.is_empty() {
        return Err(UnsealFailure { fields });
    }
    let name = sealed.metadata.name.clone().unwrap_or_default();
    secret.metadata.name = Some(name.clone());
    secret.metadata.namespace = sealed.metadata.namespace.clone();
    let skip_owner = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(BITNAMI_SKIP_SET_OWNER_REFERENCES))
        .is_some_and(|v| v == "true");
    secret.metadata.owner_references = (!skip_owner).then(|| {
        vec![OwnerReference {
            api_version: format!("{BITNAMI_GROUP}/{BITNAMI_VERSION}"),
            kind: "SealedSecret".into(),
            name,
            uid: sealed.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        }]
    });
    Ok(secret)
}

/// Whether a JSON/YAML document is a Bitnami SealedSecret.
pub fn is_bitnami_sealed_secret(value: &serde_json::Value) -> bool {
    value["apiVersion"] == format!("{BITNAMI_GROUP}/{BITNAMI_VERSION}").as_str()
        && value["kind"] == "SealedSecret"
}

/// secretsync's age SealedSecret for a Bitnami one, with warnings to show.
pub struct Converted {
    pub sealed: SealedSecret,
    /// What does not carry over (nothing that changes a value).
    pub warnings: Vec<String>,
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Unseal(#[from] UnsealFailure),
    #[error(transparent)]
    Seal(#[from] ManifestError),
}

fn without(map: Option<&BTreeMap<String, String>>, drop: &[&str]) -> BTreeMap<String, String> {
    map.into_iter()
        .flatten()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A Bitnami SealedSecret as secretsync's age `SealedSecret` (`secretsync.io/v1`)
/// for `recipients`: every value decrypted with `ring` and sealed again with
/// age; name, namespace, scope, type, immutable, the template's labels,
/// annotations and `data` (the same Go template syntax) carried over.
///
/// What happens to Bitnami's annotations:
/// - on the SealedSecret itself, `sealedsecrets.bitnami.com/cluster-wide` and
///   `namespace-wide` are dropped: they become `spec.scope`, which secretsync
///   binds inside every envelope; keeping them would say nothing more.
///   kubectl's last-applied copy goes too; other labels and annotations stay.
/// - in the template (the Secret's own metadata) every annotation stays as
///   it is, Bitnami's included (`managed`, the scope ones kubeseal copies
///   there): Bitnami's controller puts them on the Secret, so the Secret
///   secretsync writes is the same. One of them means something secretsync
///   does not do, `skip-set-owner-references` (secretsync's SealedSecret
///   always owns its Secret): it is kept, with a warning. Template finalizers
///   have no place in an age SealedSecret: dropped, with a warning.
pub fn to_age(
    bitnami: &BitnamiSealedSecret,
    ring: &KeyRing,
    recipients: Vec<String>,
) -> Result<Converted, ConvertError> {
    let opened = open(bitnami, ring)?;
    let name = bitnami.metadata.name.clone().unwrap_or_default();
    let namespace = bitnami.metadata.namespace.clone().unwrap_or_default();
    let scope = match BitnamiScope::of(bitnami.metadata.annotations.as_ref()) {
        BitnamiScope::Strict => SealedScope::Strict,
        BitnamiScope::NamespaceWide => SealedScope::NamespaceWide,
        BitnamiScope::ClusterWide => SealedScope::ClusterWide,
    };
    let mut warnings = Vec::new();
    let template = &bitnami.spec.template;
    // With the deprecated spec.data, the sealed Secret itself says what its
    // metadata and type are.
    let (labels, annotations, finalizers, type_, immutable) = match &opened.whole {
        Some(whole) => (
            whole.metadata.labels.clone(),
            whole.metadata.annotations.clone(),
            whole.metadata.finalizers.clone(),
            whole.type_.clone(),
            whole.immutable,
        ),
        None => {
            let meta = template.metadata.clone().unwrap_or_default();
            (
                meta.labels,
                meta.annotations,
                meta.finalizers,
                template.type_.clone(),
                template.immutable,
            )
        }
    };
    let annotations = without(annotations.as_ref(), &[LAST_APPLIED]);
    if annotations
        .get(BITNAMI_SKIP_SET_OWNER_REFERENCES)
        .is_some_and(|v| v == "true")
    {
        warnings.push(format!(
            "template annotation {BITNAMI_SKIP_SET_OWNER_REFERENCES}: secretsync's SealedSecret owns its Secret regardless (deleting the SealedSecret deletes the Secret)"
        ));
    }
    if finalizers.as_ref().is_some_and(|f| !f.is_empty()) {
        warnings.push(
            "template finalizers are not carried over (an age SealedSecret's template has none)"
                .into(),
        );
    }
    let template = SealedSecretTemplate {
        type_: type_.filter(|t| t != "Opaque"),
        immutable: immutable.unwrap_or(false),
        metadata: TemplateMetadata {
            labels: labels.unwrap_or_default(),
            annotations,
        },
        data: if opened.whole.is_some() {
            BTreeMap::new()
        } else {
            template.data.clone().unwrap_or_default()
        },
    };
    let template = (template.type_.is_some()
        || template.immutable
        || !template.metadata.labels.is_empty()
        || !template.metadata.annotations.is_empty()
        || !template.data.is_empty())
    .then_some(template);
    let mut skeleton = SealedSecret::new(
        &name,
        SealedSecretSpec {
            encrypted_data: BTreeMap::new(),
            scope,
            recipients: Vec::new(),
            template: None,
        },
    );
    skeleton.metadata.namespace = Some(namespace.clone());
    let labels = bitnami.metadata.labels.clone().unwrap_or_default();
    skeleton.metadata.labels = (!labels.is_empty()).then_some(labels);
    let own = without(
        bitnami.metadata.annotations.as_ref(),
        &[BITNAMI_CLUSTER_WIDE, BITNAMI_NAMESPACE_WIDE, LAST_APPLIED],
    );
    skeleton.metadata.annotations = (!own.is_empty()).then_some(own);
    let target = SealTarget {
        name,
        namespace,
        scope,
        recipients,
    };
    let sealed = seal_values(&opened.values, &target, template, Some(skeleton), &[])?;
    Ok(Converted { sealed, warnings })
}

/// A Secret ready for `kubectl apply` in `namespace` holding `key` as the
/// Bitnami controller keeps its keys: type `kubernetes.io/tls`, labelled
/// `sealedsecrets.bitnami.com/sealed-secrets-key: active`, `tls.key` and
/// `tls.crt`, under the Secret's own name (keys from PEM files get one from
/// their fingerprint). A key without a certificate gets a self-signed one
/// (`CN=sealed-secret`, 10 years, as Bitnami makes them), so `tls.crt` is a
/// valid certificate for the key.
pub fn key_secret(key: &BitnamiKey, namespace: &str) -> Result<Secret, BitnamiError> {
    let name = match key.secret_name() {
        Some(name) => name.to_string(),
        None => {
            let digest = Sha256::digest(key.fingerprint().as_bytes());
            format!("sealed-secrets-key-{}", &hex::encode(digest)[..10])
        }
    };
    let certificate = match key.certificate_pem() {
        Some(pem) => pem.to_string(),
        None => self_signed_certificate(key)?,
    };
    let mut data = BTreeMap::new();
    data.insert(
        "tls.key".to_string(),
        ByteString(key.private_key_pem()?.as_bytes().to_vec()),
    );
    data.insert("tls.crt".to_string(), ByteString(certificate.into_bytes()));
    let mut secret = Secret {
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    };
    secret.metadata.name = Some(name);
    secret.metadata.namespace = Some(namespace.to_string());
    secret.metadata.labels = Some(BTreeMap::from([(
        BITNAMI_KEY_LABEL.to_string(),
        "active".to_string(),
    )]));
    Ok(secret)
}

fn self_signed_certificate(key: &BitnamiKey) -> Result<String, BitnamiError> {
    use rsa::pkcs8::EncodePrivateKey;
    let failed =
        |e: &dyn std::fmt::Display| key_error(&key.source, format!("making a certificate: {e}"));
    let pkcs8 = key
        .private
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| failed(&e))?;
    let pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| failed(&e))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| failed(&e))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "sealed-secret");
    dn.push(rcgen::DnType::OrganizationName, "sealed-secret");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(3650);
    let certificate = params.self_signed(&pair).map_err(|e| failed(&e))?;
    Ok(certificate.pem())
}

/// A certificate's validity, `(not before, not after)` as RFC 3339 times.
pub fn certificate_validity(pem_text: &str) -> Option<(String, String)> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).ok()?;
    let certificate = block.parse_x509().ok()?;
    let time = |t: x509_parser::time::ASN1Time| {
        jiff::Timestamp::from_second(t.timestamp())
            .map(|ts| ts.to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let validity = certificate.validity();
    Some((time(validity.not_before), time(validity.not_after)))
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use rsa::pkcs1::EncodeRsaPrivateKey;
    use serde_json::json;

    use super::*;

    /// 2048-bit keys, made once per test process (key generation is slow).
    fn rsa_key(which: usize) -> &'static RsaPrivateKey {
        static KEYS: [OnceLock<RsaPrivateKey>; 2] = [OnceLock::new(), OnceLock::new()];
        KEYS[which].get_or_init(|| RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap())
    }

    fn key(which: usize, source: &str) -> BitnamiKey {
        BitnamiKey::new(rsa_key(which).clone(), source.into()).unwrap()
    }

    fn ring(which: &[usize]) -> KeyRing {
        KeyRing::new(which.iter().map(|w| key(*w, &format!("key{w}"))).collect())
    }

    fn seal(which: usize, value: &str, label: &[u8]) -> String {
        STANDARD.encode(encrypt(&rsa_key(which).to_public_key(), value.as_bytes(), label).unwrap())
    }

    fn manifest(
        namespace: &str,
        scope_annotation: Option<&str>,
        spec: serde_json::Value,
    ) -> BitnamiSealedSecret {
        let mut metadata = json!({"name": "db", "namespace": namespace, "uid": "u-1"});
        if let Some(annotation) = scope_annotation {
            metadata["annotations"] = json!({annotation: "true"});
        }
        serde_json::from_value(json!({
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "metadata": metadata,
            "spec": spec,
        }))
        .unwrap()
    }

    fn data(secret: &Secret, key: &str) -> String {
        String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
    }

    #[test]
    fn every_scope_round_trips() {
        let ring = ring(&[0]);
        for (annotation, label) in [
            (None, &b"team-a/db"[..]),
            (Some(BITNAMI_NAMESPACE_WIDE), b"team-a"),
            (Some(BITNAMI_CLUSTER_WIDE), b""),
        ] {
            let sealed = manifest(
                "team-a",
                annotation,
                json!({"encryptedData": {"password": seal(0, "pw-1", label)},
                       "template": {"type": "Opaque", "metadata": {"labels": {"app": "shop"}}}}),
            );
            let secret = unseal(&sealed, &ring, &RenderLimits::default()).unwrap();
            assert_eq!(data(&secret, "password"), "pw-1");
            assert_eq!(secret.metadata.name.as_deref(), Some("db"));
            assert_eq!(secret.metadata.namespace.as_deref(), Some("team-a"));
            assert_eq!(secret.metadata.labels.as_ref().unwrap()["app"], "shop");
            assert_eq!(secret.type_.as_deref(), Some("Opaque"));
            let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(owner.api_version, "bitnami.com/v1alpha1");
            assert_eq!(owner.kind, "SealedSecret");
            assert_eq!(owner.uid, "u-1");
            assert_eq!(owner.controller, Some(true));
            assert_eq!(owner.block_owner_deletion, None);
        }
    }

    #[test]
    fn one_sealed_secret_costs_at_most_max_key_trials_decryptions() {
        // Sealed to key 1: the first value tries key 0, then key 1, which the
        // ring then tries first; so every value after costs one trial.
        let ring = ring(&[0, 1]);
        let one = seal(1, "pw", b"team-a/db");
        let values = |n: usize| {
            (0..n)
                .map(|i| (format!("k{i:04}"), json!(one.clone())))
                .collect::<serde_json::Map<_, _>>()
        };
        let fits = manifest(
            "team-a",
            None,
            json!({"encryptedData": values(MAX_KEY_TRIALS / 2)}),
        );
        ring.last.store(0, Ordering::Relaxed);
        assert!(unseal(&fits, &ring, &RenderLimits::default()).is_ok());
        let too_many = manifest(
            "team-a",
            None,
            json!({"encryptedData": values(MAX_KEY_TRIALS + 1)}),
        );
        let failure = unseal(&too_many, &ring, &RenderLimits::default()).unwrap_err();
        assert_eq!(failure.fields().len(), 1, "{failure}");
        assert_eq!(
            failure.fields()[0].0,
            format!("spec.encryptedData.k{:04}", MAX_KEY_TRIALS)
        );
        assert!(
            failure.to_string().contains("split it into several"),
            "{failure}"
        );
    }

    #[test]
    fn a_value_sealed_for_another_namespace_does_not_decrypt() {
        let sealed = manifest(
            "team-b",
            None,
            json!({"encryptedData": {"password": seal(0, "pw-secret-2", b"team-a/db")}}),
        );
        let failure = unseal(&sealed, &ring(&[0]), &RenderLimits::default()).unwrap_err();
        assert_eq!(failure.fields().len(), 1);
        assert_eq!(failure.fields()[0].0, "spec.encryptedData.password");
        let text = failure.to_string();
        assert!(
            text.contains("no key could decrypt secret (1 key tried)"),
            "{text}"
        );
        assert!(!text.contains("pw-secret-2"));
    }

    #[test]
    fn a_tampered_value_is_named_as_such() {
        let mut bytes = encrypt(&rsa_key(0).to_public_key(), b"pw-tamper", b"ns/db").unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let err = decrypt(&ring(&[0]), &bytes, b"ns/db").unwrap_err();
        assert!(
            matches!(&err, DecryptError::Tampered { key } if key == "key0"),
            "{err}"
        );
        assert!(matches!(
            decrypt(&ring(&[0]), &[1], b""),
            Err(DecryptError::TooShort)
        ));
        assert!(matches!(
            decrypt(&ring(&[]), &bytes, b""),
            Err(DecryptError::NoKeys)
        ));
        let sealed = manifest(
            "ns",
            None,
            json!({"encryptedData": {"password": "not base64!"}}),
        );
        let failure = unseal(&sealed, &ring(&[0]), &RenderLimits::default()).unwrap_err();
        assert!(failure.to_string().contains("not base64"), "{failure}");
    }

    #[test]
    fn the_ring_finds_the_key_and_tries_it_first_next_time() {
        let ring = ring(&[0, 1]);
        let old = encrypt(&rsa_key(0).to_public_key(), b"old", b"").unwrap();
        let new = encrypt(&rsa_key(1).to_public_key(), b"new", b"").unwrap();
        assert_eq!(decrypt(&ring, &new, b"").unwrap().expose(), b"new");
        assert_eq!(ring.last.load(Ordering::Relaxed), 1);
        assert_eq!(ring.order().collect::<Vec<_>>(), vec![1, 0]);
        assert_eq!(decrypt(&ring, &old, b"").unwrap().expose(), b"old");
        assert_eq!(ring.last.load(Ordering::Relaxed), 0);
        let other = KeyRing::new(vec![key(1, "only")]);
        let err = decrypt(&other, &old, b"").unwrap_err();
        assert!(matches!(err, DecryptError::NoKeyDecrypts { tried: 1 }));
    }

    #[test]
    fn template_data_renders_over_the_decrypted_values() {
        let sealed = manifest(
            "ns",
            None,
            json!({"encryptedData": {"user": seal(0, "app", b"ns/db"), "password": seal(0, "pw-3", b"ns/db")},
                   "template": {"data": {"dsn": "postgres://{{ .user }}:{{ .password }}@db/app",
                                          "user": "{{ .user | upper }}"}}}),
        );
        let secret = unseal(&sealed, &ring(&[0]), &RenderLimits::default()).unwrap();
        assert_eq!(data(&secret, "dsn"), "postgres://app:pw-3@db/app");
        // template.data wins over a decrypted key of the same name, as in Bitnami
        assert_eq!(data(&secret, "user"), "APP");
        assert_eq!(data(&secret, "password"), "pw-3");

        let bad = manifest(
            "ns",
            None,
            json!({"encryptedData": {"password": seal(0, "pw-4-secret", b"ns/db")},
                   "template": {"data": {"dsn": "{{ .password }}{{ .nope }}", "ok": "{{ .password }}", "syntax": "{{ .password "}}}),
        );
        let failure = unseal(&bad, &ring(&[0]), &RenderLimits::default()).unwrap_err();
        let fields: Vec<&str> = failure.fields().iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.template.data.dsn", "spec.template.data.syntax"]
        );
        assert!(!failure.to_string().contains("pw-4-secret"), "{failure}");
    }

    #[test]
    fn every_failing_field_is_listed_and_no_value_shows() {
        let sealed = manifest(
            "ns",
            None,
            json!({"encryptedData": {"a": seal(1, "value-a-secret", b"ns/db"),
                                     "b": seal(0, "value-b-secret", b"ns/other"),
                                     "c": seal(0, "value-c-secret", b"ns/db")},
                   "template": {"data": {"d": "{{ .c }}-{{ .a }}"}}}),
        );
        let failure = unseal(&sealed, &ring(&[0]), &RenderLimits::default()).unwrap_err();
        let fields: Vec<&str> = failure.fields().iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["spec.encryptedData.a", "spec.encryptedData.b"]);
        let text = format!("{failure} {failure:?}");
        for value in ["value-a-secret", "value-b-secret", "value-c-secret"] {
            assert!(!text.contains(value), "{text}");
        }
    }

    #[test]
    fn skip_set_owner_references_leaves_the_secret_unowned() {
        let sealed = manifest(
            "ns",
            None,
            json!({"encryptedData": {"k": seal(0, "v", b"ns/db")},
                   "template": {"immutable": true, "metadata": {"annotations": {BITNAMI_SKIP_SET_OWNER_REFERENCES: "true"}}}}),
        );
        let secret = unseal(&sealed, &ring(&[0]), &RenderLimits::default()).unwrap();
        assert!(secret.metadata.owner_references.is_none());
        assert_eq!(secret.immutable, Some(true));
    }

    #[test]
    fn the_deprecated_data_field_holds_a_whole_secret() {
        let whole = json!({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": "x", "namespace": "y", "labels": {"old": "yes"}},
                           "type": "kubernetes.io/basic-auth",
                           "data": {"password": STANDARD.encode("pw-5")}});
        let sealed = manifest(
            "ns",
            None,
            json!({"data": seal(0, &whole.to_string(), b"ns/db")}),
        );
        let secret = unseal(&sealed, &ring(&[0]), &RenderLimits::default()).unwrap();
        assert_eq!(data(&secret, "password"), "pw-5");
        assert_eq!(secret.metadata.name.as_deref(), Some("db"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(secret.metadata.labels.as_ref().unwrap()["old"], "yes");
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));

        let both = manifest(
            "ns",
            None,
            json!({"data": seal(0, &whole.to_string(), b"ns/db"), "encryptedData": {"k": seal(0, "v", b"ns/db")}}),
        );
        let failure = unseal(&both, &ring(&[0]), &RenderLimits::default()).unwrap_err();
        assert!(
            failure.to_string().contains("at the same time"),
            "{failure}"
        );
    }

    #[test]
    fn keys_come_from_pem_secrets_and_lists() {
        let pkcs1 = rsa_key(0).to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
        let pkcs8 = {
            use rsa::pkcs8::EncodePrivateKey;
            rsa_key(1).to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap()
        };
        let cert = self_signed_certificate(&key(0, "k")).unwrap();
        let pem_file = format!("{}{}{}", cert, pkcs1.as_str(), pkcs8.as_str());
        let keys = parse_keys(pem_file.as_bytes(), "keys.pem").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].source, "keys.pem, key 1");
        assert_eq!(keys[0].bits(), 2048);
        assert!(keys[0].certificate_pem().is_some());
        assert!(keys[1].certificate_pem().is_none());
        assert!(certificate_validity(keys[0].certificate_pem().unwrap()).is_some());
        assert!(keys[0].fingerprint().starts_with("SHA256:"));

        let item = |name: &str, pem: &str| {
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                   "metadata": {"name": name, "namespace": "kube-system", "uid": "x",
                                "labels": {BITNAMI_KEY_LABEL: "active"}},
                   "data": {"tls.key": STANDARD.encode(pem), "tls.crt": STANDARD.encode(&cert)}})
        };
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                          "items": [item("sealed-secrets-keyaaaaa", &pkcs1), item("sealed-secrets-keybbbbb", &pkcs8)]});
        let yaml = serde_yaml_ng::to_string(&list).unwrap();
        let keys = parse_keys(yaml.as_bytes(), "main.key").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys[1].source,
            "main.key, item 2 (Secret kube-system/sealed-secrets-keybbbbb)"
        );
        assert_eq!(keys[1].secret_name(), Some("sealed-secrets-keybbbbb"));
        // a single Secret, as JSON, and two as YAML documents
        assert_eq!(
            parse_keys(item("one", &pkcs1).to_string().as_bytes(), "one.json")
                .unwrap()
                .len(),
            1
        );
        let docs = format!(
            "{}---\n{}",
            serde_yaml_ng::to_string(&item("a", &pkcs1)).unwrap(),
            serde_yaml_ng::to_string(&item("b", &pkcs8)).unwrap()
        );
        assert_eq!(parse_keys(docs.as_bytes(), "docs.yaml").unwrap().len(), 2);

        let mut broken = list.clone();
        broken["items"][1]["data"]["tls.key"] = json!(
            STANDARD
                .encode("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
        );
        let err = parse_keys(
            serde_yaml_ng::to_string(&broken).unwrap().as_bytes(),
            "main.key",
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "main.key, item 2 (Secret kube-system/sealed-secrets-keybbbbb): tls.key"
            ),
            "{err}"
        );
        broken["items"][1]["data"] = json!({});
        let err = parse_keys(
            serde_yaml_ng::to_string(&broken).unwrap().as_bytes(),
            "main.key",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("item 2") && err.to_string().contains("no tls.key"),
            "{err}"
        );
        assert!(parse_keys(b"kind: ConfigMap\n", "cm.yaml").is_err());
    }

    #[test]
    fn key_secrets_are_ready_to_apply() {
        let secret = key_secret(&key(0, "k.pem"), "secretsync-system").unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(
            secret.metadata.namespace.as_deref(),
            Some("secretsync-system")
        );
        assert_eq!(
            secret.metadata.labels.as_ref().unwrap()[BITNAMI_KEY_LABEL],
            "active"
        );
        let again = key_from_secret(&secret, "again").unwrap();
        assert_eq!(again.public_key(), key(0, "k").public_key());
        assert!(
            again
                .certificate_pem()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
    }

    #[test]
    fn to_age_keeps_what_the_secret_is_made_of() {
        let (identity_text, recipient) = super::super::generate_identity();
        let identities = super::super::parse_identities(&identity_text, "id").unwrap();
        let mut sealed = manifest(
            "ns",
            Some(BITNAMI_NAMESPACE_WIDE),
            json!({"encryptedData": {"password": seal(0, "pw-6", b"ns")},
                   "template": {"type": "kubernetes.io/basic-auth", "immutable": true,
                                "metadata": {"labels": {"app": "shop"}, "annotations": {"note": "x"}},
                                "data": {"dsn": "{{ .password }}@db"}}}),
        );
        sealed.metadata.labels = Some(BTreeMap::from([("team".to_string(), "a".to_string())]));
        let converted = to_age(&sealed, &ring(&[0]), vec![recipient]).unwrap();
        assert!(converted.warnings.is_empty());
        let age = converted.sealed;
        assert_eq!(age.spec.scope, SealedScope::NamespaceWide);
        assert_eq!(age.metadata.labels.as_ref().unwrap()["team"], "a");
        assert!(age.metadata.annotations.is_none());
        let template = age.spec.template.as_ref().unwrap();
        assert_eq!(template.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert!(template.immutable);
        assert_eq!(template.metadata.labels["app"], "shop");
        assert_eq!(template.data["dsn"], "{{ .password }}@db");
        let plain = super::super::manifest::unseal_all(&age, &identities, &RenderLimits::default())
            .unwrap();
        assert_eq!(data(&plain, "password"), "pw-6");
        assert_eq!(
            data(&plain, "dsn"),
            "pw-6@db",
            "the template came along, rendered"
        );
        let text = serde_yaml_ng::to_string(&age).unwrap();
        assert!(!text.contains("pw-6"));
    }
}
