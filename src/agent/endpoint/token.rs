//! The SSRF token every request but `/ping` must carry, read once at start
//! from the environment as the AWS Secrets Manager Agent reads it: the first
//! of `AWS_TOKEN`, `AWS_SESSION_TOKEN`, `AWS_CONTAINER_AUTHORIZATION_TOKEN`
//! that is set, its value itself or, for `file://PATH`, that file's content
//! trimmed. A page or a redirect that makes the application's HTTP client call
//! localhost cannot add the header, so it cannot read a secret through us.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Where the token is looked for, in this order (the AWS agent's default
/// `ssrf_env_variables`).
pub const TOKEN_VARIABLES: [&str; 3] = [
    "AWS_TOKEN",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Headers that may carry it (the AWS agent's default `ssrf_headers`; the
/// Lambda extension reads the first).
pub const TOKEN_HEADERS: [&str; 2] = ["X-Aws-Parameters-Secrets-Token", "X-Vault-Token"];

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "none of AWS_TOKEN, AWS_SESSION_TOKEN, AWS_CONTAINER_AUTHORIZATION_TOKEN is set: \
         --serve needs the token requests must carry in X-Aws-Parameters-Secrets-Token"
    )]
    Missing,
    #[error("{variable} is set but empty: an empty token would let any request in")]
    Empty { variable: &'static str },
    #[error("reading the token file {path} that {variable} names: {source}")]
    File {
        variable: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// The token; never printed.
pub struct Token(Zeroizing<Vec<u8>>);

impl Token {
    /// The token from the first of [`TOKEN_VARIABLES`] that `lookup` finds.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Token, TokenError> {
        let (variable, value) = TOKEN_VARIABLES
            .iter()
            .find_map(|name| lookup(name).map(|value| (*name, Zeroizing::new(value))))
            .ok_or(TokenError::Missing)?;
        let token = match value.strip_prefix("file://") {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| TokenError::File {
                    variable,
                    path: path.to_string(),
                    source,
                })?;
                let text = Zeroizing::new(text);
                Zeroizing::new(text.trim().as_bytes().to_vec())
            }
            None => Zeroizing::new(value.as_bytes().to_vec()),
        };
        if token.is_empty() {
            return Err(TokenError::Empty { variable });
        }
        Ok(Token(token))
    }

    /// Whether one of [`TOKEN_HEADERS`] holds exactly the token (compared in
    /// time that does not depend on where they differ).
    pub fn admits(&self, headers: &http::HeaderMap) -> bool {
        TOKEN_HEADERS.iter().any(|name| {
            headers
                .get_all(*name)
                .iter()
                .any(|value| bool::from(value.as_bytes().ct_eq(&self.0)))
        })
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_first_variable_set_wins_in_the_agents_order() {
        let token = Token::from_env(env(&[
            ("AWS_SESSION_TOKEN", "session"),
            ("AWS_TOKEN", "mine"),
        ]))
        .unwrap();
        assert!(token.admits(&headers(&[("X-Aws-Parameters-Secrets-Token", "mine")])));
        assert!(!token.admits(&headers(&[("X-Aws-Parameters-Secrets-Token", "session")])));
        let token = Token::from_env(env(&[
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod"),
            ("AWS_SESSION_TOKEN", "session"),
        ]))
        .unwrap();
        assert!(token.admits(&headers(&[("x-aws-parameters-secrets-token", "session")])));
        let token = Token::from_env(env(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod")])).unwrap();
        assert!(token.admits(&headers(&[("X-Vault-Token", "pod")])));
    }

    #[test]
    fn a_file_url_names_a_file_whose_trimmed_content_is_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let url = format!("file://{}", path.display());
        let token = Token::from_env(env(&[("AWS_TOKEN", &url)])).unwrap();
        assert!(token.admits(&headers(&[("X-Aws-Parameters-Secrets-Token", "from-file")])));
        assert!(!token.admits(&headers(&[("X-Aws-Parameters-Secrets-Token", &url)])));

        let missing = format!("file://{}", dir.path().join("absent").display());
        let error = Token::from_env(env(&[("AWS_TOKEN", &missing)])).unwrap_err();
        assert!(error.to_string().contains("AWS_TOKEN"), "{error}");
        assert!(error.to_string().contains("absent"), "{error}");
    }

    #[test]
    fn no_token_or_an_empty_one_refuses_to_start() {
        assert!(matches!(
            Token::from_env(env(&[])),
            Err(TokenError::Missing)
        ));
        assert!(matches!(
            Token::from_env(env(&[("AWS_TOKEN", ""), ("AWS_SESSION_TOKEN", "x")])),
            Err(TokenError::Empty {
                variable: "AWS_TOKEN"
            })
        ));
    }

    #[test]
    fn wrong_missing_or_prefixed_headers_are_refused() {
        let token = Token::from_env(env(&[("AWS_TOKEN", "abc")])).unwrap();
        assert!(!token.admits(&headers(&[])));
        assert!(!token.admits(&headers(&[("X-Aws-Parameters-Secrets-Token", "abcd")])));
        assert!(!token.admits(&headers(&[("X-Aws-Parameters-Secrets-Token", "ab")])));
        assert!(!token.admits(&headers(&[("Authorization", "abc")])));
        assert!(token.admits(&headers(&[
            ("X-Aws-Parameters-Secrets-Token", "wrong"),
            ("X-Vault-Token", "abc")
        ])));
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }
}
