//! age recipients and identities: X25519 (`age1...`, `AGE-SECRET-KEY-1...`) and
//! SSH (`ssh-ed25519`, `ssh-rsa`), through the `age` crate.

use std::io::BufReader;
use std::str::FromStr;

use age::secrecy::ExposeSecret;

pub type BoxedRecipient = Box<dyn age::Recipient + Send + Sync>;
pub type BoxedIdentity = Box<dyn age::Identity + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "recipient {0:?} is not an age X25519 (age1...) or SSH (ssh-ed25519, ssh-rsa) public key"
    )]
    UnknownRecipient(String),
    #[error("{source_name}: no age or SSH identity found")]
    NoIdentity { source_name: String },
    #[error("{source_name}: {message}")]
    BadIdentity {
        source_name: String,
        message: String,
    },
}

/// One public key, as `age -r` takes it.
pub fn parse_recipient(text: &str) -> Result<BoxedRecipient, KeyError> {
    let text = text.trim();
    if let Ok(recipient) = age::x25519::Recipient::from_str(text) {
        return Ok(Box::new(recipient));
    }
    if let Ok(recipient) = age::ssh::Recipient::from_str(text) {
        return Ok(Box::new(recipient));
    }
    let shown: String = text.chars().take(40).collect();
    Err(KeyError::UnknownRecipient(shown))
}

/// A recipients file, as `age -R` takes it: one key a line, `#` comments.
pub fn parse_recipients(text: &str) -> Result<Vec<(String, BoxedRecipient)>, KeyError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| Ok((l.to_string(), parse_recipient(l)?)))
        .collect()
}

/// Every identity in `text`: an age identity file (any number of keys) or an
/// SSH private key (unencrypted). `source_name` names it in errors.
pub fn parse_identities(text: &str, source_name: &str) -> Result<Vec<BoxedIdentity>, KeyError> {
    if text.contains("AGE-SECRET-KEY-") {
        let file =
            age::IdentityFile::from_buffer(BufReader::new(text.as_bytes())).map_err(|e| {
                KeyError::BadIdentity {
                    source_name: source_name.into(),
                    message: e.to_string(),
                }
            })?;
        let identities = file.into_identities().map_err(|e| KeyError::BadIdentity {
            source_name: source_name.into(),
            message: e.to_string(),
        })?;
        return Ok(identities);
    }
    if text.contains("PRIVATE KEY") {
        let identity = age::ssh::Identity::from_buffer(
            BufReader::new(text.as_bytes()),
            Some(source_name.into()),
        )
        .map_err(|e| KeyError::BadIdentity {
            source_name: source_name.into(),
            message: e.to_string(),
        })?;
        if let age::ssh::Identity::Unsupported(kind) = &identity {
            return Err(KeyError::BadIdentity {
                source_name: source_name.into(),
                message: format!("unsupported SSH key: {kind:?}"),
            });
        }
        return Ok(vec![Box::new(identity)]);
    }
    Err(KeyError::NoIdentity {
        source_name: source_name.into(),
    })
}

/// A new X25519 identity: the identity file text (as age-keygen writes it) and
/// the recipient to share.
pub fn generate_identity() -> (String, String) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
    let file = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    (file, recipient)
}
