//! ESO's Password generator: letters, digits and symbols in the counts asked,
//! each character drawn from the OS's random source (a CSPRNG) and put at a
//! random place, so no class sits at a predictable position.

use rand::Rng;
use rand::rngs::OsRng;

use crate::SecretValue;
use crate::api::{DIGITS, PasswordEncoding, PasswordRules};

/// Why no password could be made: only when `symbolCharacters` overlaps the
/// letters or digits and repeats are not allowed (every other impossibility is
/// refused by validation, naming its field).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not enough different characters for {class} without repeats (symbolCharacters shares characters with letters or digits): allow repeats or make the password shorter"
)]
pub struct PasswordError {
    class: &'static str,
}

/// One password following `rules`, encoded as `rules.encoding` says.
pub fn generate_password(rules: &PasswordRules) -> Result<SecretValue, PasswordError> {
    generate_with(rules, &mut OsRng)
}

fn generate_with(rules: &PasswordRules, rng: &mut impl Rng) -> Result<SecretValue, PasswordError> {
    let letters: Vec<char> = rules.letter_set().chars().collect();
    let digits: Vec<char> = DIGITS.chars().collect();
    let classes = [
        ("letters", rules.letters(), &letters),
        ("digits", rules.digits, &digits),
        ("symbols", rules.symbols, &rules.symbol_characters),
    ];
    let mut password: Vec<char> = Vec::with_capacity(rules.length);
    for (class, count, set) in classes {
        for _ in 0..count {
            let choice = if rules.allow_repeat {
                set.get(rng.gen_range(0..set.len().max(1))).copied()
            } else {
                // Drawn from what is not used yet: never retried, never a loop.
                let unused: Vec<char> = set
                    .iter()
                    .copied()
                    .filter(|c| !password.contains(c))
                    .collect();
                (!unused.is_empty()).then(|| unused[rng.gen_range(0..unused.len())])
            };
            let character = choice.ok_or(PasswordError { class })?;
            let at = rng.gen_range(0..=password.len());
            password.insert(at, character);
        }
    }
    let text: String = password.into_iter().collect();
    Ok(SecretValue::new(encode(text.into_bytes(), rules.encoding)))
}

/// ESO's encodings: the password's bytes as they are, or as text in base64
/// (padded), URL-safe base64 (padded), base32 (padded) or lower-case hex.
fn encode(bytes: Vec<u8>, encoding: PasswordEncoding) -> Vec<u8> {
    use base64::Engine;
    match encoding {
        PasswordEncoding::Raw => bytes,
        PasswordEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .encode(&bytes)
            .into_bytes(),
        PasswordEncoding::Base64url => base64::engine::general_purpose::URL_SAFE
            .encode(&bytes)
            .into_bytes(),
        PasswordEncoding::Base32 => data_encoding::BASE32.encode(&bytes).into_bytes(),
        PasswordEncoding::Hex => hex::encode(&bytes).into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::{DEFAULT_SYMBOL_CHARACTERS, PasswordSpec};

    fn rules(yaml: &str) -> PasswordRules {
        let spec: PasswordSpec = serde_yaml_ng::from_str(yaml).unwrap();
        spec.rules("spec").unwrap()
    }

    fn text(value: &SecretValue) -> String {
        value.expose_str().unwrap().to_string()
    }

    fn count(password: &str, set: &str) -> usize {
        password.chars().filter(|c| set.contains(*c)).count()
    }

    #[test]
    fn default_password_has_esos_shape() {
        for _ in 0..50 {
            let password = text(&generate_password(&rules("{}")).unwrap());
            assert_eq!(password.chars().count(), 24);
            assert_eq!(count(&password, DIGITS), 6);
            assert_eq!(count(&password, DEFAULT_SYMBOL_CHARACTERS), 6);
            let letters = password.chars().filter(char::is_ascii_alphabetic).count();
            assert_eq!(letters, 12);
            let distinct: BTreeSet<char> = password.chars().collect();
            assert_eq!(distinct.len(), 24, "no repeats by default");
        }
    }

    #[test]
    fn counts_no_upper_and_symbol_characters_are_followed() {
        let rules = rules(
            "length: 30\ndigits: 10\nsymbols: 3\nsymbolCharacters: '-_'\nnoUpper: true\nallowRepeat: true",
        );
        for _ in 0..50 {
            let password = text(&generate_password(&rules).unwrap());
            assert_eq!(password.len(), 30);
            assert_eq!(count(&password, DIGITS), 10);
            assert_eq!(count(&password, "-_"), 3);
            assert!(!password.chars().any(|c| c.is_ascii_uppercase()));
            assert_eq!(
                password.chars().filter(char::is_ascii_lowercase).count(),
                17
            );
        }
    }

    #[test]
    fn the_longest_passwords_and_the_shortest_are_made() {
        let long = rules("length: 1024\nallowRepeat: true");
        assert_eq!(text(&generate_password(&long).unwrap()).len(), 1024);
        let short = rules("length: 1");
        let one = text(&generate_password(&short).unwrap());
        assert_eq!(one.len(), 1);
        assert!(one.chars().all(|c| c.is_ascii_alphabetic()));
    }

    #[test]
    fn passwords_differ() {
        let rules = rules("{}");
        let made: BTreeSet<String> = (0..200)
            .map(|_| text(&generate_password(&rules).unwrap()))
            .collect();
        assert_eq!(made.len(), 200);
    }

    #[test]
    fn every_letter_without_repeats_uses_the_whole_alphabet() {
        let rules = rules("length: 52\ndigits: 0\nsymbols: 0");
        let password = text(&generate_password(&rules).unwrap());
        let distinct: BTreeSet<char> = password.chars().collect();
        assert_eq!(distinct.len(), 52);
    }

    #[test]
    fn overlapping_symbols_without_repeats_fail_clearly() {
        // Validation counts 26 letters and 26 symbols apart; they are the same 26.
        let rules = rules(
            "length: 52\ndigits: 0\nsymbols: 26\nnoUpper: true\nsymbolCharacters: abcdefghijklmnopqrstuvwxyz",
        );
        let error = generate_password(&rules).unwrap_err();
        assert!(error.to_string().contains("symbols"), "{error}");
    }

    #[test]
    fn encodings_are_esos() {
        assert_eq!(encode(b"ab?".to_vec(), PasswordEncoding::Base64), b"YWI/");
        assert_eq!(
            encode(b"ab?".to_vec(), PasswordEncoding::Base64url),
            b"YWI_"
        );
        assert_eq!(
            encode(b"ab".to_vec(), PasswordEncoding::Base32),
            b"MFRA===="
        );
        assert_eq!(encode(b"ab".to_vec(), PasswordEncoding::Hex), b"6162");
        assert_eq!(encode(b"ab".to_vec(), PasswordEncoding::Raw), b"ab");
        let encoded = rules("encoding: hex");
        let password = text(&generate_password(&encoded).unwrap());
        assert_eq!(password.len(), 48);
        assert!(password.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
