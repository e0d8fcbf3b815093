//! Generators (`generators.secretsync.io/v1alpha1`): values made rather than
//! read (a password, a UUID, an ECR or STS token), used by an ExternalSecret
//! through `dataFrom[].sourceRef.generatorRef`. Field names, defaults and
//! output keys are ESO's, so an ESO generator manifest moves over by its
//! `apiVersion` only.

use std::collections::BTreeSet;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validation::secret_key_problem;
use super::{AwsAuth, FieldErrors};

/// The API group of secretsync's generators.
pub const GENERATOR_GROUP: &str = "generators.secretsync.io";
/// ESO's generator group, served with `--eso-compat` (`crds/compat/`).
pub const ESO_GENERATOR_GROUP: &str = "generators.external-secrets.io";
/// The one version both groups serve.
pub const GENERATOR_VERSION: &str = "v1alpha1";

/// ESO's default password length.
pub const DEFAULT_PASSWORD_LENGTH: i64 = 24;
/// The longest password secretsync makes: far beyond any use, small enough
/// that a typo (`100000`) is refused rather than written into a Secret.
pub const MAX_PASSWORD_LENGTH: i64 = 1024;
/// ESO's default symbol characters.
pub const DEFAULT_SYMBOL_CHARACTERS: &str = "~!@#$%^&*()_+`-={}|[]\\:\"<>?,./";
/// Letters, lower case and upper case, and digits a password is made of.
pub const LOWER_LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";
pub const UPPER_LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
pub const DIGITS: &str = "0123456789";

/// The generator kinds secretsync runs; ESO's others are refused by name.
pub const GENERATOR_KINDS: &[&str] = &[
    "Password",
    "UUID",
    "ECRAuthorizationToken",
    "STSSessionToken",
    "ClusterGenerator",
];

/// A random password (ESO's `Password`): key `password`, or each of `secretKeys`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "generators.secretsync.io",
    version = "v1alpha1",
    kind = "Password",
    doc = "Generates a random password (ESO's Password generator).",
    namespaced,
    category = "secretsync",
    category = "generators"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordSpec {
    /// Length of the password (1 to 1024).
    #[serde(default = "default_length")]
    #[schemars(extend("default" = 24))]
    pub length: i64,
    /// How many digits; a quarter of the length when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<i64>,
    /// How many symbols; a quarter of the length when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbols: Option<i64>,
    /// The symbols to choose from; ESO's set when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_characters: Option<String>,
    /// Lower-case letters only.
    #[serde(default)]
    pub no_upper: bool,
    /// Whether a character may appear more than once.
    #[serde(default)]
    pub allow_repeat: bool,
    /// The keys that each get a password of their own; `password` when unset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_keys: Vec<String>,
    /// How each password is encoded; `raw` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<PasswordEncoding>,
}

fn default_length() -> i64 {
    DEFAULT_PASSWORD_LENGTH
}

impl Default for PasswordSpec {
    fn default() -> Self {
        Self {
            length: DEFAULT_PASSWORD_LENGTH,
            digits: None,
            symbols: None,
            symbol_characters: None,
            no_upper: false,
            allow_repeat: false,
            secret_keys: Vec::new(),
            encoding: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PasswordEncoding {
    #[default]
    Raw,
    Base64,
    Base64url,
    Base32,
    Hex,
}

/// A random (version 4) UUID (ESO's `UUID`): key `uuid`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "generators.secretsync.io",
    version = "v1alpha1",
    kind = "UUID",
    root = "Uuid",
    doc = "Generates a random UUID (ESO's UUID generator).",
    namespaced,
    category = "secretsync",
    category = "generators"
)]
#[serde(deny_unknown_fields)]
pub struct UuidSpec {}

/// A registry token from ECR's GetAuthorizationToken (ESO's
/// `ECRAuthorizationToken`): keys `username`, `password`, `proxy_endpoint`
/// (private registries) and `expires_at` (Unix seconds).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "generators.secretsync.io",
    version = "v1alpha1",
    kind = "ECRAuthorizationToken",
    root = "EcrAuthorizationToken",
    doc = "Generates an ECR registry token (ESO's ECRAuthorizationToken generator).",
    namespaced,
    category = "secretsync",
    category = "generators"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EcrAuthorizationTokenSpec {
    pub region: String,
    /// How to get AWS credentials; unset: the controller's own (IRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
    /// A role to assume before calling ECR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `private` (default: ECR) or `public` (ECR Public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<EcrScope>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EcrScope {
    #[default]
    Private,
    Public,
}

/// Temporary credentials from STS GetSessionToken (ESO's `STSSessionToken`):
/// keys `access_key_id`, `secret_access_key`, `session_token`, `expiration`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "generators.secretsync.io",
    version = "v1alpha1",
    kind = "STSSessionToken",
    root = "StsSessionToken",
    doc = "Generates temporary AWS credentials (ESO's STSSessionToken generator).",
    namespaced,
    category = "secretsync",
    category = "generators"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StsSessionTokenSpec {
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_parameters: Option<StsRequestParameters>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StsRequestParameters {
    /// Seconds the credentials last: 900 to 129600 (AWS's default 43200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration: Option<i32>,
    /// The MFA device of the IAM user, when MFA is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// The code the MFA device shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_code: Option<String>,
}

/// One generator for every namespace (ESO's `ClusterGenerator`): `kind` says
/// which, and the matching `generator.<kind>Spec` holds its spec. Credentials
/// it names are read in the namespace of the ExternalSecret using it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "generators.secretsync.io",
    version = "v1alpha1",
    kind = "ClusterGenerator",
    doc = "A generator usable from every namespace (ESO's ClusterGenerator).",
    category = "secretsync",
    category = "generators"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterGeneratorSpec {
    /// Password, UUID, ECRAuthorizationToken or STSSessionToken.
    pub kind: String,
    pub generator: ClusterGeneratorSpecs,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterGeneratorSpecs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_spec: Option<PasswordSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid_spec: Option<UuidSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecr_authorization_token_spec: Option<EcrAuthorizationTokenSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_session_token_spec: Option<StsSessionTokenSpec>,
}

/// What a password spec means once ESO's defaults are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordRules {
    pub length: usize,
    pub digits: usize,
    pub symbols: usize,
    pub symbol_characters: Vec<char>,
    pub no_upper: bool,
    pub allow_repeat: bool,
    pub secret_keys: Vec<String>,
    pub encoding: PasswordEncoding,
}

impl PasswordRules {
    /// How many letters the password holds.
    pub fn letters(&self) -> usize {
        self.length - self.digits - self.symbols
    }

    /// The letters to choose from.
    pub fn letter_set(&self) -> String {
        if self.no_upper {
            LOWER_LETTERS.to_string()
        } else {
            format!("{LOWER_LETTERS}{UPPER_LETTERS}")
        }
    }
}

impl PasswordSpec {
    /// The rules this spec means (ESO's defaults applied), or every problem,
    /// each under `base` (`spec`, or `spec.generator.passwordSpec`).
    pub fn rules(&self, base: &str) -> Result<PasswordRules, FieldErrors> {
        let mut errors = FieldErrors::default();
        let length = self.length;
        if !(1..=MAX_PASSWORD_LENGTH).contains(&length) {
            errors.push(
                format!("{base}.length"),
                format!("must be between 1 and {MAX_PASSWORD_LENGTH}, not {length}"),
            );
        }
        // ESO: a quarter of the length each, rounded down.
        let quarter = length.clamp(0, MAX_PASSWORD_LENGTH) / 4;
        let digits = self.digits.unwrap_or(quarter);
        let symbols = self.symbols.unwrap_or(quarter);
        for (name, count) in [("digits", digits), ("symbols", symbols)] {
            if count < 0 {
                errors.push(format!("{base}.{name}"), "must not be negative");
            }
        }
        let mut symbol_characters: Vec<char> = self
            .symbol_characters
            .as_deref()
            .unwrap_or(DEFAULT_SYMBOL_CHARACTERS)
            .chars()
            .collect();
        // Each distinct symbol once: a repeated one would only weigh more.
        let mut seen = BTreeSet::new();
        symbol_characters.retain(|c| seen.insert(*c));
        if symbols > 0 && symbol_characters.is_empty() {
            errors.push(
                format!("{base}.symbolCharacters"),
                "must not be empty when symbols is more than 0",
            );
        }
        if symbol_characters.iter().any(|c| c.is_control()) {
            errors.push(
                format!("{base}.symbolCharacters"),
                "must not hold control characters",
            );
        }
        let mut keys = BTreeSet::new();
        for (i, key) in self.secret_keys.iter().enumerate() {
            if let Some(problem) = secret_key_problem(key) {
                errors.push(
                    format!("{base}.secretKeys[{i}]"),
                    format!("{key:?} is not a valid Secret key: {problem}"),
                );
            } else if !keys.insert(key.as_str()) {
                errors.push(
                    format!("{base}.secretKeys[{i}]"),
                    format!("duplicate key {key:?}"),
                );
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // All three are within 0..=MAX_PASSWORD_LENGTH here, or errors above.
        let (length, digits, symbols) = (length as usize, digits as usize, symbols as usize);
        if digits.saturating_add(symbols) > length {
            errors.push(
                format!("{base}.length"),
                format!(
                    "{length} is less than digits ({digits}) plus symbols ({symbols}): raise length or lower them"
                ),
            );
            return Err(errors);
        }
        let rules = PasswordRules {
            length,
            digits,
            symbols,
            symbol_characters,
            no_upper: self.no_upper,
            allow_repeat: self.allow_repeat,
            secret_keys: if self.secret_keys.is_empty() {
                vec!["password".into()]
            } else {
                self.secret_keys.clone()
            },
            encoding: self.encoding.unwrap_or_default(),
        };
        if !rules.allow_repeat {
            let letters = rules.letter_set().len();
            let classes = [
                ("length", "letters", rules.letters(), letters),
                ("digits", "digits", digits, DIGITS.len()),
                (
                    "symbols",
                    "symbol characters",
                    symbols,
                    rules.symbol_characters.len(),
                ),
            ];
            for (field, what, wanted, available) in classes {
                if wanted > available {
                    errors.push(
                        format!("{base}.{field}"),
                        format!(
                            "needs {wanted} different {what} but only {available} exist and allowRepeat is false: allow repeats or make the password shorter"
                        ),
                    );
                }
            }
        }
        errors.into_result().map(|()| rules)
    }

    pub fn validate(&self) -> Result<(), FieldErrors> {
        self.rules("spec").map(drop)
    }
}

/// Checks what ECR and STS generators share: region, role, and that their
/// credentials stay in `namespace` (the generator's, or for a ClusterGenerator
/// the ExternalSecret's).
fn validate_aws(
    base: &str,
    region: &str,
    role: Option<&str>,
    auth: Option<&AwsAuth>,
    namespace: Option<&str>,
    errors: &mut FieldErrors,
) {
    if region.trim().is_empty() {
        errors.push(format!("{base}.region"), "must not be empty");
    }
    if let Some(arn) = role
        && !(arn.starts_with("arn:") && arn.contains(":iam::") && arn.contains(":role/"))
    {
        errors.push(
            format!("{base}.role"),
            format!("{arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
        );
    }
    let Some(auth) = auth else {
        return;
    };
    let mut elsewhere = |field: String, given: Option<&str>| {
        if let (Some(given), Some(namespace)) = (given, namespace)
            && given != namespace
        {
            errors.push(
                field,
                format!("{given:?} is another namespace: a generator reads credentials only in {namespace:?}"),
            );
        }
    };
    if let Some(jwt) = &auth.jwt {
        elsewhere(
            format!("{base}.auth.jwt.serviceAccountRef.namespace"),
            jwt.service_account_ref.namespace.as_deref(),
        );
    }
    if let Some(secret_ref) = &auth.secret_ref {
        let selectors = [
            (
                "accessKeyIDSecretRef",
                Some(&secret_ref.access_key_id_secret_ref),
            ),
            (
                "secretAccessKeySecretRef",
                Some(&secret_ref.secret_access_key_secret_ref),
            ),
            (
                "sessionTokenSecretRef",
                secret_ref.session_token_secret_ref.as_ref(),
            ),
        ];
        for (name, selector) in selectors {
            if let Some(selector) = selector {
                elsewhere(
                    format!("{base}.auth.secretRef.{name}.namespace"),
                    selector.namespace.as_deref(),
                );
            }
        }
    }
}

impl EcrAuthorizationTokenSpec {
    /// `namespace`: where its credentials are read.
    pub fn validate_at(&self, base: &str, namespace: Option<&str>, errors: &mut FieldErrors) {
        validate_aws(
            base,
            &self.region,
            self.role.as_deref(),
            self.auth.as_ref(),
            namespace,
            errors,
        );
    }
}

/// The session lengths GetSessionToken accepts, in seconds.
pub const STS_SESSION_SECONDS: std::ops::RangeInclusive<i32> = 900..=129_600;

impl StsSessionTokenSpec {
    /// `namespace`: where its credentials are read.
    pub fn validate_at(&self, base: &str, namespace: Option<&str>, errors: &mut FieldErrors) {
        validate_aws(
            base,
            &self.region,
            self.role.as_deref(),
            self.auth.as_ref(),
            namespace,
            errors,
        );
        let duration = self
            .request_parameters
            .as_ref()
            .and_then(|p| p.session_duration);
        if let Some(seconds) = duration
            && !STS_SESSION_SECONDS.contains(&seconds)
        {
            errors.push(
                format!("{base}.requestParameters.sessionDuration"),
                format!("must be between 900 and 129600 seconds, not {seconds}"),
            );
        }
    }
}

impl ClusterGeneratorSpec {
    /// Checks that `kind` is one secretsync runs and that exactly its spec is
    /// given, and that spec itself; `namespace`: where its credentials are read.
    pub fn validate(&self, namespace: Option<&str>) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        let given = &self.generator;
        let set = [
            ("Password", "passwordSpec", given.password_spec.is_some()),
            ("UUID", "uuidSpec", given.uuid_spec.is_some()),
            (
                "ECRAuthorizationToken",
                "ecrAuthorizationTokenSpec",
                given.ecr_authorization_token_spec.is_some(),
            ),
            (
                "STSSessionToken",
                "stsSessionTokenSpec",
                given.sts_session_token_spec.is_some(),
            ),
        ];
        let Some((_, wanted, _)) = set.iter().find(|(kind, _, _)| *kind == self.kind) else {
            errors.push(
                "spec.kind",
                format!(
                    "{:?} is not a generator kind secretsync runs (Password, UUID, ECRAuthorizationToken, STSSessionToken)",
                    self.kind
                ),
            );
            return Err(errors);
        };
        for (_, field, present) in set {
            if field == *wanted && !present {
                errors.push(
                    format!("spec.generator.{field}"),
                    format!("is required for kind {}", self.kind),
                );
            } else if field != *wanted && present {
                errors.push(
                    format!("spec.generator.{field}"),
                    format!("does not match kind {}", self.kind),
                );
            }
        }
        if let Some(password) = &given.password_spec
            && let Err(problems) = password.rules("spec.generator.passwordSpec")
        {
            errors.0.extend(problems.0);
        }
        if let Some(ecr) = &given.ecr_authorization_token_spec {
            ecr.validate_at(
                "spec.generator.ecrAuthorizationTokenSpec",
                namespace,
                &mut errors,
            );
        }
        if let Some(sts) = &given.sts_session_token_spec {
            sts.validate_at("spec.generator.stsSessionTokenSpec", namespace, &mut errors);
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(yaml: &str) -> PasswordSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn password_defaults_are_esos() {
        let rules = password("{}").rules("spec").unwrap();
        assert_eq!(rules.length, 24);
        assert_eq!((rules.digits, rules.symbols), (6, 6));
        assert_eq!(rules.symbol_characters.len(), 30);
        assert!(!rules.no_upper && !rules.allow_repeat);
        assert_eq!(rules.secret_keys, ["password"]);
        assert_eq!(rules.encoding, PasswordEncoding::Raw);
    }

    #[test]
    fn password_length_out_of_bounds_names_spec_length() {
        for length in [0, -1, 1025, 100_000] {
            let errors = password(&format!("length: {length}"))
                .validate()
                .unwrap_err();
            assert!(
                errors
                    .0
                    .iter()
                    .any(|e| e.to_string().contains("spec.length")),
                "{length}: {errors}"
            );
        }
        password("length: 1024\nallowRepeat: true")
            .validate()
            .unwrap();
        password("length: 1\ndigits: 0\nsymbols: 0")
            .validate()
            .unwrap();
    }

    #[test]
    fn digits_and_symbols_fit_the_length() {
        let errors = password("length: 8\ndigits: 5\nsymbols: 4")
            .validate()
            .unwrap_err();
        assert!(errors.to_string().contains("spec.length"), "{errors}");
        let errors = password("digits: -1").validate().unwrap_err();
        assert!(errors.to_string().contains("spec.digits"), "{errors}");
        let errors = password("symbols: 2\nsymbolCharacters: ''")
            .validate()
            .unwrap_err();
        assert!(
            errors.to_string().contains("spec.symbolCharacters"),
            "{errors}"
        );
    }

    #[test]
    fn no_repeats_longer_than_the_alphabet_is_refused() {
        let errors = password("length: 200").validate().unwrap_err();
        assert!(errors.to_string().contains("allowRepeat"), "{errors}");
        let errors = password("length: 40\ndigits: 11\nsymbols: 0")
            .validate()
            .unwrap_err();
        assert!(errors.to_string().contains("spec.digits"), "{errors}");
        password("length: 200\nallowRepeat: true")
            .validate()
            .unwrap();
    }

    #[test]
    fn duplicate_or_bad_secret_keys_are_refused() {
        let errors = password("secretKeys: [a, a, 'b/c']")
            .validate()
            .unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("spec.secretKeys[1]") && text.contains("spec.secretKeys[2]"));
    }

    #[test]
    fn cluster_generator_kind_must_match_its_spec() {
        let spec: ClusterGeneratorSpec =
            serde_yaml_ng::from_str("kind: Password\ngenerator: {uuidSpec: {}}").unwrap();
        let text = spec.validate(Some("a")).unwrap_err().to_string();
        assert!(text.contains("spec.generator.passwordSpec"), "{text}");
        assert!(text.contains("spec.generator.uuidSpec"), "{text}");
        let spec: ClusterGeneratorSpec =
            serde_yaml_ng::from_str("kind: VaultDynamicSecret\ngenerator: {}").unwrap();
        let text = spec.validate(Some("a")).unwrap_err().to_string();
        assert!(text.contains("spec.kind"), "{text}");
        let spec: ClusterGeneratorSpec =
            serde_yaml_ng::from_str("kind: Password\ngenerator: {passwordSpec: {length: 0}}")
                .unwrap();
        let text = spec.validate(Some("a")).unwrap_err().to_string();
        assert!(
            text.contains("spec.generator.passwordSpec.length"),
            "{text}"
        );
    }

    #[test]
    fn aws_generators_keep_credentials_in_their_namespace() {
        let spec: StsSessionTokenSpec = serde_yaml_ng::from_str(
            "region: eu-west-1\nauth: {jwt: {serviceAccountRef: {name: sa, namespace: other}}}\nrequestParameters: {sessionDuration: 10}",
        )
        .unwrap();
        let mut errors = FieldErrors::default();
        spec.validate_at("spec", Some("team"), &mut errors);
        let text = errors.to_string();
        assert!(
            text.contains("spec.auth.jwt.serviceAccountRef.namespace"),
            "{text}"
        );
        assert!(
            text.contains("spec.requestParameters.sessionDuration"),
            "{text}"
        );
    }
}
