//! `decodingStrategy`: values stored base64-encoded are decoded before use.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use crate::SecretValue;
use crate::api::DecodingStrategy;

/// Decodes `value`; on failure, the name of the encoding it was not.
pub(crate) fn decode(
    value: SecretValue,
    strategy: DecodingStrategy,
) -> Result<SecretValue, &'static str> {
    match strategy {
        DecodingStrategy::None => Ok(value),
        DecodingStrategy::Base64 => STANDARD
            .decode(value.expose())
            .map(SecretValue::new)
            .map_err(|_| "base64"),
        DecodingStrategy::Base64Url => URL_SAFE
            .decode(value.expose())
            .map(SecretValue::new)
            .map_err(|_| "base64url"),
        DecodingStrategy::Auto => Ok(STANDARD
            .decode(value.expose())
            .or_else(|_| URL_SAFE.decode(value.expose()))
            .map(SecretValue::new)
            .unwrap_or(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str, strategy: DecodingStrategy) -> Result<Vec<u8>, &'static str> {
        decode(SecretValue::from(input), strategy).map(|v| v.expose().to_vec())
    }

    #[test]
    fn each_strategy() {
        assert_eq!(run("aGk=", DecodingStrategy::None).unwrap(), b"aGk=");
        assert_eq!(run("aGk=", DecodingStrategy::Base64).unwrap(), b"hi");
        assert_eq!(
            run("-_8=", DecodingStrategy::Base64Url).unwrap(),
            [0xfb, 0xff]
        );
        assert_eq!(run("-_8=", DecodingStrategy::Base64), Err("base64"));
        assert_eq!(run("+/8=", DecodingStrategy::Base64Url), Err("base64url"));
        assert_eq!(run("aGk=", DecodingStrategy::Auto).unwrap(), b"hi");
        assert_eq!(run("-_8=", DecodingStrategy::Auto).unwrap(), [0xfb, 0xff]);
        assert_eq!(
            run("not base64!", DecodingStrategy::Auto).unwrap(),
            b"not base64!"
        );
    }
}
