//! ESO's `syncWindows`: when periodic refreshes of an ExternalSecret may
//! happen. Each window opens on a schedule (UTC) and stays open for its
//! duration; `allow` refreshes only while one is open, `deny` never while
//! one is. First syncs, spec changes and force-syncs are not held back.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{FieldErrors, GoDuration};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncWindows {
    /// `allow`: periodic refreshes only while a window is open; `deny`:
    /// none while one is.
    pub kind: SyncWindowKind,
    #[schemars(length(min = 1))]
    pub windows: Vec<SyncWindow>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncWindowKind {
    Allow,
    Deny,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncWindow {
    /// When each window opens: a 5-field cron expression in UTC
    /// (`0 22 * * 1-5`), `@hourly`, `@daily`, `@midnight`, `@weekly`,
    /// `@monthly`, `@yearly`, `@annually`, or `@every 6h`.
    pub schedule: String,
    /// How long each window stays open (`8h`).
    pub duration: GoDuration,
}

/// When windows open.
#[derive(Clone, Debug)]
enum Opens {
    Cron(Box<croner::Cron>),
    /// `@every D`: at every multiple of D since the Unix epoch.
    Every(Duration),
}

/// Parsed windows, ready to ask about a moment.
#[derive(Clone, Debug)]
pub struct SyncWindowSchedule {
    allow: bool,
    windows: Vec<(Opens, SignedDuration)>,
}

/// How many window ends a `deny` search steps over before it gives up: a
/// schedule whose windows overlap without a gap has no allowed moment.
const MAX_STEPS: usize = 1000;

impl SyncWindowSchedule {
    /// Parses every window, or says which field is wrong (under
    /// `spec.syncWindows`).
    pub fn compile(spec: &SyncWindows) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        if spec.windows.is_empty() {
            errors.push(
                "spec.syncWindows.windows",
                "at least one window is required",
            );
        }
        let mut windows = Vec::new();
        for (i, window) in spec.windows.iter().enumerate() {
            let field = format!("spec.syncWindows.windows[{i}]");
            let duration = SignedDuration::try_from(Duration::from(window.duration))
                .unwrap_or(SignedDuration::MAX);
            match parse_schedule(&window.schedule) {
                Ok(opens) => windows.push((opens, duration)),
                Err(problem) => errors.push(format!("{field}.schedule"), problem),
            }
        }
        errors.into_result()?;
        Ok(Self {
            allow: spec.kind == SyncWindowKind::Allow,
            windows,
        })
    }

    /// Whether a periodic refresh may happen at `at`.
    pub fn allows(&self, at: Timestamp) -> bool {
        let open = self.open_until(at).is_some();
        if self.allow { open } else { !open }
    }

    /// The first moment at or after `from` when a periodic refresh may
    /// happen; `None` when none comes (in reach of the search).
    pub fn next_allowed(&self, from: Timestamp) -> Option<Timestamp> {
        if self.allows(from) {
            return Some(from);
        }
        if self.allow {
            // Closed now: the next window to open.
            self.windows
                .iter()
                .filter_map(|(opens, _)| next_opening(opens, from))
                .min()
        } else {
            // Open now: just past the end of the windows open then.
            let mut at = from;
            for _ in 0..MAX_STEPS {
                match self.open_until(at) {
                    None => return Some(at),
                    Some(end) => at = end.checked_add(SignedDuration::from_secs(1)).ok()?,
                }
            }
            None
        }
    }

    /// If a window is open at `at`: the latest end among those open.
    fn open_until(&self, at: Timestamp) -> Option<Timestamp> {
        self.windows
            .iter()
            .filter_map(|(opens, duration)| {
                let opened = last_opening(opens, at)?;
                let end = opened.checked_add(*duration).unwrap_or(Timestamp::MAX);
                (at <= end).then_some(end)
            })
            .max()
    }
}

fn parse_schedule(text: &str) -> Result<Opens, String> {
    let text = text.trim();
    if let Some(every) = text.strip_prefix("@every ") {
        let every: GoDuration = every
            .trim()
            .parse()
            .map_err(|e: super::DurationError| e.to_string())?;
        let every = Duration::from(every);
        if every < Duration::from_secs(1) {
            return Err("@every needs a duration of at least 1s".into());
        }
        return Ok(Opens::Every(every));
    }
    // croner knows every shorthand of ESO's parser but this one.
    let text = if text.eq_ignore_ascii_case("@midnight") {
        "@daily"
    } else {
        text
    };
    let fields = text.split_whitespace().count();
    if !text.starts_with('@') && fields != 5 {
        return Err(format!(
            "{:?} is not a schedule: use 5 cron fields (minute hour day-of-month month day-of-week, in UTC), @daily and the like, or @every 6h",
            shown(text)
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(text)
        .map(|cron| Opens::Cron(Box::new(cron)))
        .map_err(|e| format!("{:?} is not a schedule: {e}", shown(text)))
}

/// A schedule as an error quotes it: configuration, never a secret, but
/// kept short.
fn shown(text: &str) -> String {
    text.chars().take(60).collect()
}

fn to_chrono(at: Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(at.as_second(), 0)
}

fn from_chrono(at: chrono::DateTime<chrono::Utc>) -> Option<Timestamp> {
    Timestamp::from_second(at.timestamp()).ok()
}

/// The last opening at or before `at`.
fn last_opening(opens: &Opens, at: Timestamp) -> Option<Timestamp> {
    match opens {
        Opens::Cron(cron) => cron
            .find_previous_occurrence(&to_chrono(at)?, true)
            .ok()
            .and_then(from_chrono),
        Opens::Every(every) => {
            let every = i64::try_from(every.as_secs()).ok()?.max(1);
            let second = at.as_second();
            Timestamp::from_second(second - second.rem_euclid(every)).ok()
        }
    }
}

/// The first opening after `at`.
fn next_opening(opens: &Opens, at: Timestamp) -> Option<Timestamp> {
    match opens {
        Opens::Cron(cron) => cron
            .find_next_occurrence(&to_chrono(at)?, false)
            .ok()
            .and_then(from_chrono),
        Opens::Every(every) => {
            let every = i64::try_from(every.as_secs()).ok()?.max(1);
            let second = at.as_second();
            let next = second
                .checked_sub(second.rem_euclid(every))?
                .checked_add(every)?;
            Timestamp::from_second(next).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: &str, windows: &[(&str, &str)]) -> SyncWindowSchedule {
        let windows: Vec<_> = windows
            .iter()
            .map(|(s, d)| serde_json::json!({"schedule": s, "duration": d}))
            .collect();
        let spec: SyncWindows =
            serde_json::from_value(serde_json::json!({"kind": kind, "windows": windows})).unwrap();
        SyncWindowSchedule::compile(&spec).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn an_allow_window_opens_on_its_schedule_for_its_duration() {
        // Weekdays 22:00-06:00 UTC. 2026-12-07 is a Monday.
        let nightly = schedule("allow", &[("0 22 * * 1-5", "8h")]);
        assert!(!nightly.allows(at("2026-12-07T21:59:59Z")));
        assert!(nightly.allows(at("2026-12-07T22:00:00Z")));
        assert!(nightly.allows(at("2026-12-08T06:00:00Z")));
        assert!(!nightly.allows(at("2026-12-08T06:00:01Z")));
        // Saturday night opens nothing; Friday's window runs into Saturday.
        assert!(nightly.allows(at("2026-12-12T03:00:00Z")));
        assert!(!nightly.allows(at("2026-12-12T23:00:00Z")));
        assert_eq!(
            nightly.next_allowed(at("2026-12-12T23:00:00Z")),
            Some(at("2026-12-14T22:00:00Z"))
        );
        let now = at("2026-12-08T01:00:00Z");
        assert_eq!(nightly.next_allowed(now), Some(now));
    }

    #[test]
    fn a_deny_window_holds_refreshes_back_until_it_closes() {
        let freeze = schedule("deny", &[("@daily", "2h"), ("30 1 * * *", "1h")]);
        assert!(freeze.allows(at("2026-12-07T23:59:59Z")));
        assert!(!freeze.allows(at("2026-12-08T00:00:00Z")));
        // The second window keeps it closed past the first one's end.
        assert_eq!(
            freeze.next_allowed(at("2026-12-08T00:10:00Z")),
            Some(at("2026-12-08T02:30:01Z"))
        );
        assert!(freeze.allows(at("2026-12-08T02:30:01Z")));
    }

    #[test]
    fn every_opens_at_multiples_of_its_interval() {
        let every = schedule("allow", &[("@every 6h", "1h"), ("@midnight", "1m")]);
        assert!(every.allows(at("2026-12-07T06:30:00Z")));
        assert!(!every.allows(at("2026-12-07T07:30:00Z")));
        assert_eq!(
            every.next_allowed(at("2026-12-07T07:30:00Z")),
            Some(at("2026-12-07T12:00:00Z"))
        );
    }

    #[test]
    fn a_schedule_that_never_fires_never_opens() {
        let never = schedule("allow", &[("0 0 31 2 *", "1h")]);
        assert!(!never.allows(at("2026-12-07T00:00:00Z")));
        assert_eq!(never.next_allowed(at("2026-12-07T00:00:00Z")), None);
        let deny = schedule("deny", &[("0 0 31 2 *", "1h")]);
        assert!(deny.allows(at("2026-12-07T00:00:00Z")));
    }

    #[test]
    fn windows_that_never_close_leave_no_allowed_moment() {
        let always = schedule("deny", &[("* * * * *", "5m")]);
        assert_eq!(always.next_allowed(at("2026-12-07T00:00:00Z")), None);
    }

    #[test]
    fn a_bad_schedule_is_named_by_its_field() {
        for (bad, says) in [
            ("0 22 * *", "5 cron fields"),
            ("0 0 22 * * *", "5 cron fields"),
            ("61 * * * *", "is not a schedule"),
            ("@sometimes", "is not a schedule"),
            ("@every 0s", "at least 1s"),
            ("@every soon", "is not a duration"),
        ] {
            let spec: SyncWindows = serde_json::from_value(serde_json::json!({
                "kind": "allow",
                "windows": [{"schedule": "@daily", "duration": "1h"}, {"schedule": bad, "duration": "1h"}],
            }))
            .unwrap();
            let errors = SyncWindowSchedule::compile(&spec).unwrap_err().to_string();
            assert!(
                errors.starts_with("spec.syncWindows.windows[1].schedule: ")
                    && errors.contains(says),
                "{bad}: {errors}"
            );
        }
        let empty: SyncWindows =
            serde_json::from_value(serde_json::json!({"kind": "deny", "windows": []})).unwrap();
        assert!(SyncWindowSchedule::compile(&empty).is_err());
    }
}
