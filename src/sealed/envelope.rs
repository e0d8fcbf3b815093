//! One sealed value: an age envelope (ASCII-armored) whose plaintext binds the
//! value to where it may be decrypted. The plaintext is
//!
//! ```text
//! secretsync.io/sealed v1
//! scope: strict
//! namespace: team-a        (strict and namespace-wide only)
//! name: db-credentials     (strict only)
//! key: password
//!
//! <the value's bytes, as they are>
//! ```
//!
//! so anyone can make one with the plain `age` CLI.

use std::io::{Read, Write};

use age::armor::{ArmoredReader, ArmoredWriter, Format};

use super::keys::{BoxedIdentity, BoxedRecipient};
use crate::SecretValue;
use crate::api::SealedScope;

const MAGIC: &str = "secretsync.io/sealed v1";

/// Where a value may be decrypted into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub scope: SealedScope,
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl Binding {
    fn header(&self) -> String {
        let mut header = format!("{MAGIC}\nscope: {}\n", self.scope.as_str());
        if self.scope != SealedScope::ClusterWide {
            header.push_str(&format!("namespace: {}\n", self.namespace));
        }
        if self.scope == SealedScope::Strict {
            header.push_str(&format!("name: {}\n", self.name));
        }
        header.push_str(&format!("key: {}\n\n", self.key));
        header
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no recipients: give at least one --recipient or --recipients-file")]
    NoRecipients,
    #[error("age: {0}")]
    Age(String),
}

/// Why a sealed value did not decrypt. Never holds plaintext.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsealError {
    #[error(
        "no identity can decrypt it (sealed to other recipients, or the identity is not the cluster's)"
    )]
    WrongIdentity,
    #[error("the ciphertext was tampered with or is corrupt")]
    Tampered,
    #[error("the armored ciphertext is truncated or malformed: {0}")]
    BadArmor(String),
    #[error("no identities to decrypt with")]
    NoIdentities,
    #[error("it decrypts, but is not a secretsync sealed value (missing its header)")]
    NotSealedValue,
    #[error("it was sealed with scope {sealed}, but is used with scope {used}")]
    ScopeMismatch { sealed: String, used: String },
    #[error("it was sealed for namespace {sealed:?}, not {used:?}")]
    NamespaceMismatch { sealed: String, used: String },
    #[error("it was sealed for the SealedSecret named {sealed:?}, not {used:?}")]
    NameMismatch { sealed: String, used: String },
    #[error("it was sealed for key {sealed:?}, not {used:?}")]
    KeyMismatch { sealed: String, used: String },
}

/// Seals `value` for `binding` to every recipient; ASCII-armored.
pub fn seal(
    value: &SecretValue,
    binding: &Binding,
    recipients: &[BoxedRecipient],
) -> Result<String, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    let encryptor = age::Encryptor::with_recipients(
        recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
    )
    .map_err(|e| SealError::Age(e.to_string()))?;
    let mut armored = Vec::new();
    let io = |e: std::io::Error| SealError::Age(e.to_string());
    let armor = ArmoredWriter::wrap_output(&mut armored, Format::AsciiArmor).map_err(io)?;
    let mut writer = encryptor.wrap_output(armor).map_err(io)?;
    writer.write_all(binding.header().as_bytes()).map_err(io)?;
    writer.write_all(value.expose()).map_err(io)?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(io)?;
    Ok(String::from_utf8(armored).expect("armor is ASCII"))
}

/// Decrypts a sealed value (armored or binary) and checks it belongs to `expected`.
pub fn unseal(
    ciphertext: &[u8],
    identities: &[BoxedIdentity],
    expected: &Binding,
) -> Result<SecretValue, UnsealError> {
    if identities.is_empty() {
        return Err(UnsealError::NoIdentities);
    }
    let decryptor =
        age::Decryptor::new_buffered(ArmoredReader::new(ciphertext)).map_err(classify)?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(classify)?;
    let mut plaintext = zeroize::Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => UnsealError::Tampered,
            _ => UnsealError::BadArmor(e.to_string()),
        })?;
    let split = plaintext
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or(UnsealError::NotSealedValue)?;
    let header =
        std::str::from_utf8(&plaintext[..split]).map_err(|_| UnsealError::NotSealedValue)?;
    let mut lines = header.lines();
    if lines.next() != Some(MAGIC) {
        return Err(UnsealError::NotSealedValue);
    }
    let fields: std::collections::BTreeMap<&str, &str> =
        lines.filter_map(|l| l.split_once(": ")).collect();
    let field = |name: &str| fields.get(name).copied().unwrap_or_default().to_string();
    let sealed_scope = field("scope");
    if sealed_scope != expected.scope.as_str() {
        return Err(UnsealError::ScopeMismatch {
            sealed: sealed_scope,
            used: expected.scope.as_str().into(),
        });
    }
    if expected.scope != SealedScope::ClusterWide && field("namespace") != expected.namespace {
        return Err(UnsealError::NamespaceMismatch {
            sealed: field("namespace"),
            used: expected.namespace.clone(),
        });
    }
    if expected.scope == SealedScope::Strict && field("name") != expected.name {
        return Err(UnsealError::NameMismatch {
            sealed: field("name"),
            used: expected.name.clone(),
        });
    }
    if field("key") != expected.key {
        return Err(UnsealError::KeyMismatch {
            sealed: field("key"),
            used: expected.key.clone(),
        });
    }
    Ok(SecretValue::new(plaintext[split + 2..].to_vec()))
}

fn classify(error: age::DecryptError) -> UnsealError {
    match error {
        age::DecryptError::NoMatchingKeys => UnsealError::WrongIdentity,
        age::DecryptError::InvalidMac
        | age::DecryptError::DecryptionFailed
        | age::DecryptError::KeyDecryptionFailed => UnsealError::Tampered,
        age::DecryptError::Io(e) => UnsealError::BadArmor(e.to_string()),
        other => UnsealError::BadArmor(other.to_string()),
    }
}
