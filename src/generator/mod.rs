//! Generators: a source of values beside the providers. An ExternalSecret's
//! `dataFrom[].sourceRef.generatorRef` names one; its output keys land in the
//! Secret as an `extract`'s would (rewrites and templates apply), so targets
//! and templates do not care where a value came from.
//!
//! Password and UUID are pure (OS randomness only); ECRAuthorizationToken and
//! STSSessionToken call AWS with credentials got as an AWS store gets them
//! (`provider::aws::auth`). Values never appear in errors or logs: they travel
//! as [`SecretValue`]s.
//!
//! When to generate again is the caller's decision (the ExternalSecret
//! controller: on a refresh only, and before an expiring value expires, see
//! [`renew_at`]).

mod password;
mod uuid;

#[cfg(feature = "clients")]
mod ecr;
#[cfg(feature = "clients")]
mod sts;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::SecretValue;
use crate::api::{EcrAuthorizationTokenSpec, FieldErrors, PasswordSpec, StsSessionTokenSpec};

pub use password::{PasswordError, generate_password};
pub use uuid::generate_uuid;

/// What one generator run made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generated {
    /// Output key -> value (`password`, `uuid`, `username`, ...).
    pub values: BTreeMap<String, SecretValue>,
    /// When the values stop working (ECR and STS tokens); `None`: never.
    pub expires_at: Option<jiff::Timestamp>,
}

/// A generator as its object describes it, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum Generator {
    Password(PasswordSpec),
    Uuid,
    EcrAuthorizationToken(EcrAuthorizationTokenSpec),
    StsSessionToken(StsSessionTokenSpec),
}

impl Generator {
    /// Whether what it makes expires, so must be made again before then
    /// whatever the ExternalSecret's refresh interval says.
    pub fn expires(&self) -> bool {
        matches!(
            self,
            Generator::EcrAuthorizationToken(_) | Generator::StsSessionToken(_)
        )
    }

    /// Runs a generator that needs nothing outside this process (Password,
    /// UUID); `None` for one that calls AWS.
    pub fn generate_offline(&self) -> Option<Result<Generated, GeneratorError>> {
        match self {
            Generator::Password(spec) => Some(generate_passwords(spec)),
            Generator::Uuid => Some(Ok(Generated {
                values: BTreeMap::from([("uuid".to_string(), generate_uuid())]),
                expires_at: None,
            })),
            Generator::EcrAuthorizationToken(_) | Generator::StsSessionToken(_) => None,
        }
    }
}

fn generate_passwords(spec: &PasswordSpec) -> Result<Generated, GeneratorError> {
    let rules = spec.rules("spec").map_err(GeneratorError::Invalid)?;
    let mut values = BTreeMap::new();
    for key in &rules.secret_keys {
        let password =
            generate_password(&rules).map_err(|e| GeneratorError::Failed(format!("spec: {e}")))?;
        values.insert(key.clone(), password);
    }
    Ok(Generated {
        values,
        expires_at: None,
    })
}

/// Why a generator made nothing. Names the field or the AWS call at fault;
/// never carries a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GeneratorError {
    /// The generator's spec breaks a rule (each problem names its field).
    #[error("{0}")]
    Invalid(FieldErrors),
    /// The object named does not exist.
    #[error("not found")]
    NotFound,
    /// A kind or apiVersion secretsync does not run.
    #[error("{0}")]
    Unsupported(String),
    /// Reading the object from the API server failed.
    #[error("reading it: {0}")]
    Kubernetes(String),
    /// Credentials or the AWS call failed (AWS's own words).
    #[error("{0}")]
    Aws(crate::provider::ProviderError),
    /// The generator ran but could not make a value (an answer in a shape
    /// that cannot be used, say).
    #[error("{0}")]
    Failed(String),
}

impl GeneratorError {
    /// Whether trying again may help without anyone changing anything.
    pub fn transient(&self) -> bool {
        match self {
            GeneratorError::Kubernetes(_) => true,
            GeneratorError::Aws(error) => error.is_transient(),
            _ => false,
        }
    }
}

/// A value is renewed no sooner than this after it was made, however short
/// its life: a token that AWS hands out nearly expired must not make the
/// controller ask again in a loop.
pub const MIN_RENEWAL_WAIT: Duration = Duration::from_secs(60);
/// The most time left before expiry at which a value is renewed.
pub const RENEWAL_MARGIN: Duration = Duration::from_secs(3600);

/// When a value made at `made_at` that expires at `expires_at` is made again:
/// once 80% of its lifetime has passed, or one hour before it expires if that
/// is later (a 12-hour ECR token: after 11 h; a 1-hour STS session: after
/// 48 min), but never sooner than [`MIN_RENEWAL_WAIT`] after it was made.
/// Renewing ahead of time leaves a margin for a failed call to be retried
/// (with backoff) while the old value still works, without renewing a
/// long-lived token needlessly often.
pub fn renew_at(made_at: jiff::Timestamp, expires_at: jiff::Timestamp) -> jiff::Timestamp {
    let lifetime = Duration::try_from(expires_at.duration_since(made_at)).unwrap_or_default();
    let margin = (lifetime / 5).min(RENEWAL_MARGIN);
    let wait = lifetime.saturating_sub(margin).max(MIN_RENEWAL_WAIT);
    let wait = jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX);
    made_at.checked_add(wait).unwrap_or(expires_at)
}

/// Whole-seconds Unix time as ESO writes `expires_at` and `expiration`.
#[cfg(feature = "clients")]
fn unix_seconds(at: jiff::Timestamp) -> SecretValue {
    SecretValue::new(at.as_second().to_string().into_bytes())
}

/// A base64 `user:password` authorization token split into its two halves.
/// Nothing of the token reaches the error.
#[cfg(feature = "clients")]
fn split_basic_token(token: &str) -> Result<(SecretValue, SecretValue), GeneratorError> {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| GeneratorError::Failed("the authorization token is not base64".into()))?;
    let decoded = SecretValue::new(decoded);
    let text = decoded
        .expose_str()
        .ok_or_else(|| GeneratorError::Failed("the authorization token is not text".into()))?;
    let mut parts = text.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(user), Some(password), None) => {
            Ok((SecretValue::from(user), SecretValue::from(password)))
        }
        _ => Err(GeneratorError::Failed(
            "the authorization token is not of the form user:password".into(),
        )),
    }
}

#[cfg(feature = "clients")]
mod resolve;
#[cfg(feature = "clients")]
pub use resolve::{GeneratorFailure, ResolvedGenerator, generate, resolve, run};

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn renewal_comes_before_expiry() {
        // 12 h ECR token: renewed 1 h before it expires.
        assert_eq!(renew_at(at(0), at(12 * 3600)), at(11 * 3600));
        // 1 h STS session: after 80% of it.
        assert_eq!(renew_at(at(0), at(3600)), at(2880));
        // 5 h: 80% and the hour's margin meet.
        assert_eq!(renew_at(at(0), at(5 * 3600)), at(4 * 3600));
        // Nearly expired, or expired already: not before a minute.
        assert_eq!(renew_at(at(0), at(30)), at(60));
        assert_eq!(renew_at(at(0), at(-100)), at(60));
    }

    #[cfg(feature = "clients")]
    #[test]
    fn basic_tokens_split_without_quoting_them() {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:s3cr3t-pw");
        let (user, password) = split_basic_token(&token).unwrap();
        assert_eq!(user.expose_str(), Some("AWS"));
        assert_eq!(password.expose_str(), Some("s3cr3t-pw"));
        let bad = base64::engine::general_purpose::STANDARD.encode("no-colon-s3cr3t");
        let error = split_basic_token(&bad).unwrap_err().to_string();
        assert!(!error.contains("s3cr3t"), "{error}");
        assert!(split_basic_token("%%%").is_err());
    }

    #[test]
    fn offline_generators_make_their_keys() {
        let made = Generator::Uuid.generate_offline().unwrap().unwrap();
        assert_eq!(made.values.keys().collect::<Vec<_>>(), ["uuid"]);
        let spec: PasswordSpec = serde_yaml_ng::from_str("secretKeys: [a, b]").unwrap();
        let made = Generator::Password(spec)
            .generate_offline()
            .unwrap()
            .unwrap();
        assert_eq!(made.values.len(), 2);
        assert_ne!(made.values["a"], made.values["b"]);
        let bad: PasswordSpec = serde_yaml_ng::from_str("length: 0").unwrap();
        let error = Generator::Password(bad)
            .generate_offline()
            .unwrap()
            .unwrap_err();
        assert!(error.to_string().contains("spec.length"), "{error}");
        assert!(!Generator::Uuid.expires());
    }
}
