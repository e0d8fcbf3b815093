//! `GoDuration`: a duration written as Go's `time.ParseDuration` reads it
//! (`1h`, `15m`, `1h30m`, `1.5s`, `300ms`, `0`), as ESO and every Kubernetes
//! API write them, with Go's limit (at most 2562047h47m16.854775807s) and
//! never negative. Parsing never panics: every input is tenant input.
//!
//! Go's grammar is `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` or `0`, with the units
//! `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m` and `h`. The crate
//! `go-parse-duration` ports it, but loops forever on a long fraction and
//! panics on an overflowing sum, so this module implements the grammar itself.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The CRD schema's pattern: Go's grammar without a sign, so the API server
/// refuses most bad values (days, spaces, negatives) before anyone reads them.
/// Values over the limit pass the pattern and are refused when read.
pub const DURATION_PATTERN: &str =
    r"^\+?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";

const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// Go's `time.Duration` is an `int64` of nanoseconds.
const MAX_NANOS: u64 = i64::MAX as u64;

/// A non-negative duration of at most Go's maximum (`i64::MAX` nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration {
    nanos: u64,
}

/// Why a text is not a duration. The message quotes the text (a duration is
/// configuration, never a secret), shortened when long.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration: use Go syntax such as 1h, 30m, 1h30m, 90s or 0")]
    Syntax(Shown),
    #[error("{0:?} is not a duration: a number needs a unit (ns, us, ms, s, m or h), as in 30s")]
    MissingUnit(Shown),
    #[error("{text:?} is not a duration: unknown unit {unit:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit { text: Shown, unit: Shown },
    #[error(
        "{0:?} is not a duration: Go durations have no unit \"d\" (days); write hours, 24h for a day"
    )]
    Days(Shown),
    #[error("{0:?} is not a duration: it must not be negative")]
    Negative(Shown),
    #[error("{0:?} is too long a duration: the most Go allows is 2562047h47m16.854775807s")]
    Overflow(Shown),
}

/// Input text as an error shows it: at most 40 characters.
#[derive(Clone, PartialEq, Eq)]
pub struct Shown(String);

impl Shown {
    fn of(text: &str) -> Self {
        const MAX: usize = 40;
        let mut chars = text.chars();
        let shown: String = chars.by_ref().take(MAX).collect();
        if chars.next().is_some() {
            Self(format!("{shown}..."))
        } else {
            Self(shown)
        }
    }
}

impl fmt::Debug for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration { nanos: 0 };
    /// Go's largest duration, 2562047h47m16.854775807s.
    pub const MAX: GoDuration = GoDuration { nanos: MAX_NANOS };

    /// `secs` seconds, or [`GoDuration::MAX`] if that is more.
    pub const fn from_secs(secs: u64) -> Self {
        match secs.checked_mul(NANOS_PER_SECOND) {
            Some(nanos) if nanos <= MAX_NANOS => Self { nanos },
            _ => Self::MAX,
        }
    }

    /// The same length as a `std::time::Duration` (always fits: the limit is
    /// far below `Duration::MAX`).
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos)
    }

    pub const fn is_zero(self) -> bool {
        self.nanos == 0
    }

    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// `self * factor`, saturating at [`GoDuration::MAX`] (and at zero for a
    /// negative or NaN factor), for jitter and backoff arithmetic that must
    /// never panic.
    pub fn saturating_mul_f64(self, factor: f64) -> std::time::Duration {
        let scaled = self.nanos as f64 * factor;
        // `as` saturates (NaN becomes 0), so this cannot overflow or panic.
        std::time::Duration::from_nanos((scaled as u64).min(MAX_NANOS))
    }
}

impl From<GoDuration> for std::time::Duration {
    fn from(duration: GoDuration) -> Self {
        duration.to_std()
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text).map(|nanos| GoDuration { nanos })
    }
}

/// Go's `time.ParseDuration`, refusing negatives; the result in nanoseconds.
fn parse(text: &str) -> Result<u64, DurationError> {
    let shown = || Shown::of(text);
    let mut rest = text;
    if rest.starts_with('-') {
        return Err(DurationError::Negative(shown()));
    }
    if let Some(unsigned) = rest.strip_prefix('+') {
        rest = unsigned;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(DurationError::Syntax(shown()));
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (whole, digits, after) = leading_int(rest).ok_or_else(|| overflow(text))?;
        rest = after;
        let (fraction, scale, fraction_digits) = match rest.strip_prefix('.') {
            Some(after_dot) => {
                let (fraction, scale, digits, after) = leading_fraction(after_dot);
                rest = after;
                (fraction, scale, digits)
            }
            None => (0, 1.0, 0),
        };
        if digits == 0 && fraction_digits == 0 {
            return Err(DurationError::Syntax(shown()));
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(shown()));
        }
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        if unit.contains('-') {
            // `1h-5m`: Go reads the unit `h-`; what was meant is a subtraction.
            return Err(DurationError::Negative(shown()));
        }
        let unit_nanos = unit_nanos(unit).ok_or_else(|| match unit {
            "d" => DurationError::Days(shown()),
            _ => DurationError::UnknownUnit {
                text: shown(),
                unit: Shown::of(unit),
            },
        })?;
        // Go's bound is 1<<63 until the very end (so that -1<<63 parses).
        let value = whole
            .checked_mul(unit_nanos)
            .filter(|v| *v <= 1 << 63)
            .ok_or_else(|| overflow(text))?;
        // As Go does: a float is exact enough for a fraction of an hour.
        let fraction_nanos = (fraction as f64 * (unit_nanos as f64 / scale)) as u64;
        let value = value
            .checked_add(fraction_nanos)
            .filter(|v| *v <= 1 << 63)
            .ok_or_else(|| overflow(text))?;
        total = total
            .checked_add(value)
            .filter(|v| *v <= 1 << 63)
            .ok_or_else(|| overflow(text))?;
    }
    if total > MAX_NANOS {
        return Err(overflow(text));
    }
    Ok(total)
}

fn overflow(text: &str) -> DurationError {
    DurationError::Overflow(Shown::of(text))
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3_600 * NANOS_PER_SECOND,
        _ => return None,
    })
}

/// The leading decimal digits: (value, how many, rest), or `None` when the
/// value exceeds 1<<63 (Go's `errLeadingInt`).
fn leading_int(text: &str) -> Option<(u64, usize, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = text.split_at(digits);
    let mut value: u64 = 0;
    for digit in number.bytes() {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))
            .filter(|v| *v <= 1 << 63)?;
    }
    Some((value, digits, rest))
}

/// The digits after a decimal point: (value, 10^precision kept, how many, rest).
/// Digits past what a u64 holds are consumed without adding precision, as Go does.
fn leading_fraction(text: &str) -> (u64, f64, usize, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = text.split_at(digits);
    let mut value: u64 = 0;
    let mut scale = 1.0;
    let mut saturated = false;
    for digit in number.bytes() {
        if saturated {
            continue;
        }
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit - b'0')))
            .filter(|v| *v <= MAX_NANOS)
        {
            Some(next) => {
                value = next;
                scale *= 10.0;
            }
            None => saturated = true,
        }
    }
    (value, scale, digits, rest)
}

/// Go's `Duration.String()`: `1h0m0s`, `1m30s`, `1.5s`, `300ms`, `0s`.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.nanos;
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < NANOS_PER_SECOND {
            let (scale, unit) = match nanos {
                0..1_000 => (1, "ns"),
                1_000..1_000_000 => (1_000, "µs"),
                _ => (1_000_000, "ms"),
            };
            return write!(f, "{}{unit}", Decimal(nanos, scale));
        }
        let seconds = Decimal(nanos % (60 * NANOS_PER_SECOND), NANOS_PER_SECOND);
        let minutes = nanos / (60 * NANOS_PER_SECOND);
        match (minutes / 60, minutes % 60) {
            (0, 0) => write!(f, "{seconds}s"),
            (0, m) => write!(f, "{m}m{seconds}s"),
            (h, m) => write!(f, "{h}h{m}m{seconds}s"),
        }
    }
}

/// `value / scale` in decimal, without trailing zeros (`scale` a power of ten).
struct Decimal(u64, u64);

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Decimal(value, scale) = *self;
        write!(f, "{}", value / scale)?;
        let fraction = value % scale;
        if fraction != 0 {
            let width = scale.ilog10() as usize;
            let digits = format!("{fraction:0width$}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = GoDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Go duration string such as \"1h\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<GoDuration, E> {
                text.parse().map_err(E::custom)
            }

            // YAML reads `refreshInterval: 0` as a number; the CRD's schema
            // (type string) refuses it, so say how to write it instead.
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<GoDuration, E> {
                Err(E::custom(
                    "a duration is a string with a unit: quote it and add one, as in \"0\", \"30s\" or \"1h\"",
                ))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<GoDuration, E> {
                self.visit_u64(value.unsigned_abs())
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<GoDuration, E> {
                self.visit_u64(0)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> Result<u64, DurationError> {
        text.parse::<GoDuration>().map(GoDuration::as_nanos)
    }

    const SECOND: u64 = NANOS_PER_SECOND;

    #[test]
    fn reads_what_go_reads() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("+0", 0),
            ("0s", 0),
            ("5s", 5 * SECOND),
            ("30s", 30 * SECOND),
            ("1478s", 1478 * SECOND),
            ("+5s", 5 * SECOND),
            ("5.0s", 5 * SECOND),
            ("5.6s", 5 * SECOND + 600_000_000),
            ("5.s", 5 * SECOND),
            (".5s", SECOND / 2),
            ("1.0s", SECOND),
            ("1.00s", SECOND),
            ("1.004s", SECOND + 4_000_000),
            ("100.00100s", 100 * SECOND + 1_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12µs", 12_000),
            ("12μs", 12_000),
            ("13ms", 13_000_000),
            ("14s", 14 * SECOND),
            ("15m", 15 * 60 * SECOND),
            ("16h", 16 * 3600 * SECOND),
            ("3h30m", (3 * 3600 + 30 * 60) * SECOND),
            ("10.5s4m", 4 * 60 * SECOND + 10 * SECOND + SECOND / 2),
            ("1h2m3s4ms5us6ns", 3723 * SECOND + 4_005_006),
            ("39h9m14.425s", 140_954_425_000_000),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 1_200_000_000_000),
            ("9007199254740993ns", 9_007_199_254_740_993),
            ("9223372036854775807ns", i64::MAX as u64),
            ("9223372036854775.807us", i64::MAX as u64),
            ("9223372036s854ms775us807ns", i64::MAX as u64),
            ("2562047h47m16.854775807s", i64::MAX as u64),
            // A fraction longer than a u64 holds is read to its precision.
            ("0.100000000000000000000h", 360 * SECOND),
            ("0.830103483285477580700h", 2_988_372_539_827),
        ];
        for (text, want) in cases {
            assert_eq!(nanos(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn refuses_what_go_refuses_and_negatives() {
        for bad in [
            "", "3", "-", "s", ".", "-.", ".s", "+.s", "1 h", "1h ", " 1h", "1.5", "1h30",
        ] {
            assert!(nanos(bad).is_err(), "{bad:?} must not parse");
        }
        assert!(matches!(nanos("3"), Err(DurationError::MissingUnit(_))));
        assert!(matches!(nanos("-1s"), Err(DurationError::Negative(_))));
        assert!(matches!(nanos("1h-5m"), Err(DurationError::Negative(_))));
        assert!(matches!(nanos("-0"), Err(DurationError::Negative(_))));
        assert!(matches!(nanos("1d"), Err(DurationError::Days(_))));
        assert!(matches!(
            nanos("2w"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            nanos("1hour"),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn refuses_more_than_go_holds_without_panicking() {
        for huge in [
            "9223372036854775808ns",
            "9223372036854775.808us",
            "2562047h47m16.854775808s",
            "2562048h",
            "5000000000000000h",
            "4000000000000000h4000000000000000h",
            "9223372036854775807h",
            "99999999999999999999999999999999s",
            "1h9223372036854775807ns",
            "2562047h2562047h2562047h",
        ] {
            assert!(
                matches!(nanos(huge), Err(DurationError::Overflow(_))),
                "{huge}: {:?}",
                nanos(huge)
            );
        }
        // A very long fraction is consumed, not looped over forever.
        let long = format!("1.{}s", "9".repeat(10_000));
        assert_eq!(nanos(&long), Ok(2 * SECOND));
    }

    #[test]
    fn messages_say_what_to_write() {
        let message = |text: &str| nanos(text).unwrap_err().to_string();
        assert!(message("1d").contains("24h"), "{}", message("1d"));
        assert!(message("1h-5m").contains("must not be negative"));
        assert!(message("5000000000000000h").contains("2562047h47m16.854775807s"));
        assert!(message("10 minutes").contains("unknown unit \" minutes\""));
        assert!(message("1h 30m").contains("unknown unit"));
        assert!(message("").contains("Go syntax such as 1h"));
        let long = message(&"9".repeat(500));
        assert!(long.len() < 200, "long input is shortened: {long}");
    }

    #[test]
    fn prints_as_go_prints() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (4 * 60 * SECOND + 5 * SECOND, "4m5s"),
            (4 * 60 * SECOND + 5 * SECOND + 1_000_000, "4m5.001s"),
            (
                5 * 3600 * SECOND + 6 * 60 * SECOND + 7_001 * SECOND / 1000,
                "5h6m7.001s",
            ),
            (8 * 60 * SECOND + 1, "8m0.000000001s"),
            (3600 * SECOND, "1h0m0s"),
            (i64::MAX as u64, "2562047h47m16.854775807s"),
        ];
        for (nanos, want) in cases {
            let duration = GoDuration { nanos: *nanos };
            assert_eq!(duration.to_string(), *want);
            assert_eq!(
                want.parse::<GoDuration>(),
                Ok(duration),
                "round trip {want}"
            );
        }
    }

    #[test]
    fn pattern_admits_every_parsable_unsigned_form() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for good in [
            "0", "1h", "1h30m", "1.5s", ".5s", "5.s", "300ms", "12µs", "+1h",
        ] {
            assert!(pattern.is_match(good), "{good}");
            assert!(good.parse::<GoDuration>().is_ok(), "{good}");
        }
        for bad in ["1d", "-1s", "1h-5m", "1 h", "", "3", "1hour"] {
            assert!(!pattern.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn conversions_never_overflow() {
        assert_eq!(
            GoDuration::MAX.to_std(),
            std::time::Duration::from_nanos(i64::MAX as u64)
        );
        assert_eq!(GoDuration::from_secs(u64::MAX), GoDuration::MAX);
        assert_eq!(GoDuration::from_secs(3600).to_string(), "1h0m0s");
        assert_eq!(
            GoDuration::MAX.saturating_mul_f64(1.1),
            GoDuration::MAX.to_std()
        );
        assert_eq!(
            GoDuration::from_secs(100).saturating_mul_f64(0.5),
            std::time::Duration::from_secs(50)
        );
        assert_eq!(
            GoDuration::from_secs(100).saturating_mul_f64(f64::NAN),
            std::time::Duration::ZERO
        );
        assert_eq!(
            GoDuration::from_secs(100).saturating_mul_f64(-2.0),
            std::time::Duration::ZERO
        );
    }

    #[test]
    fn serde_reads_strings_and_explains_numbers() {
        let read = |json: &str| serde_json::from_str::<GoDuration>(json).map_err(|e| e.to_string());
        assert_eq!(read("\"1h\""), Ok(GoDuration::from_secs(3600)));
        assert!(read("0").unwrap_err().contains("quote it"));
        assert!(read("\"1d\"").unwrap_err().contains("24h"));
        assert_eq!(
            serde_json::to_string(&GoDuration::from_secs(90)).unwrap(),
            "\"1m30s\""
        );
    }
}
