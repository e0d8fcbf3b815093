//! sprig's date functions. Go's `time.Time` has no gtmpl type, so a time is
//! carried as the text Go prints for it (`2024-05-01 10:00:00 +0000 UTC`),
//! which is also what `{{ now }}` renders in ESO; the date functions read it
//! back. Layouts are Go's (`2006-01-02 15:04:05`).

use gtmpl_ng::Value;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use super::Fail;
use super::go::{self, Args};

const GO_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f %z";

fn local() -> TimeZone {
    TimeZone::system()
}

/// A time as Go's `Time.String()` prints it.
fn time_value(time: &Zoned) -> Value {
    go::string(format!(
        "{} {}",
        time.strftime("%Y-%m-%d %H:%M:%S%.f %z"),
        zone_abbreviation(time)
    ))
}

fn zone_abbreviation(time: &Zoned) -> String {
    let abbreviation = time.time_zone().to_offset_info(time.timestamp());
    let name = abbreviation.abbreviation().to_string();
    if name.is_empty() { "UTC".into() } else { name }
}

/// A value as a time, if it is one: a time's text, or a Unix time in seconds.
fn as_time(value: &Value) -> Option<Zoned> {
    match value {
        Value::String(text) => {
            let (body, _abbreviation) = text.rsplit_once(' ')?;
            let parsed = jiff::fmt::strtime::parse(GO_TIME_FORMAT, body).ok()?;
            parsed.to_zoned().ok()
        }
        Value::Number(n) => {
            let seconds = n.as_i64()?;
            Some(Timestamp::from_second(seconds).ok()?.to_zoned(local()))
        }
        _ => None,
    }
}

fn now() -> Zoned {
    Zoned::now().with_time_zone(local())
}

/// `now`: the current time.
pub(super) fn now_fn(args: &[Value]) -> Result<Value, Fail> {
    Args::exactly(args, 0, "0")?;
    Ok(time_value(&now()))
}

/// sprig's `formatDate`: a time or a Unix time; anything else is now.
fn format_date(layout: &str, date: &Value, zone: &TimeZone) -> String {
    let time = as_time(date)
        .unwrap_or_else(now)
        .with_time_zone(zone.clone());
    format_go(layout, &time)
}

fn zone_named(name: &str) -> TimeZone {
    if name == "Local" {
        return local();
    }
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

/// `date LAYOUT DATE`.
pub(super) fn date(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    Ok(go::string(format_date(&a.string(0)?, a.value(1), &local())))
}

/// `dateInZone LAYOUT DATE ZONE`.
pub(super) fn date_in_zone(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    let zone = zone_named(&a.string(2)?);
    Ok(go::string(format_date(&a.string(0)?, a.value(1), &zone)))
}

/// `htmlDate DATE`: `2006-01-02`.
pub(super) fn html_date(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(format_date("2006-01-02", a.value(0), &local())))
}

/// `htmlDateInZone DATE ZONE`.
pub(super) fn html_date_in_zone(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let zone = zone_named(&a.string(1)?);
    Ok(go::string(format_date("2006-01-02", a.value(0), &zone)))
}

/// Go's `time.ParseDuration` (`1h30m`, `-1.5h`, `300ms`), in nanoseconds.
fn parse_go_duration(text: &str) -> Option<i128> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest.get(..number_len)?.parse().ok()?;
        rest = rest.get(number_len..)?;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match rest.get(..unit_len)? {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = rest.get(unit_len..)?;
        total += number * scale;
    }
    if !total.is_finite() || total > 9.2e18 {
        return None;
    }
    let nanos = total.round() as i128;
    Some(if negative { -nanos } else { nanos })
}

fn modify(args: &[Value]) -> Result<Option<Value>, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let delta = a.string(0)?;
    let time = as_time(a.value(1)).ok_or(Fail::Type {
        index: 1,
        want: "time.Time",
        got: go::kind_name(a.value(1)),
    })?;
    let Some(nanos) = parse_go_duration(&delta) else {
        return Ok(None);
    };
    let span =
        jiff::SignedDuration::from_nanos(nanos.clamp(i64::MIN as i128, i64::MAX as i128) as i64);
    let moved = time
        .checked_add(span)
        .map_err(|_| Fail::Reason("the date moves out of range"))?;
    Ok(Some(time_value(&moved)))
}

/// `dateModify DELTA DATE`: DATE moved by a Go duration (`-1.5h`); DATE
/// unchanged when DELTA is not one.
pub(super) fn date_modify(args: &[Value]) -> Result<Value, Fail> {
    Ok(modify(args)?.unwrap_or_else(|| args.get(1).cloned().unwrap_or(Value::NoValue)))
}

/// `mustDateModify DELTA DATE`: fails when DELTA is not a Go duration.
pub(super) fn must_date_modify(args: &[Value]) -> Result<Value, Fail> {
    modify(args)?.ok_or(Fail::Reason("the first argument is not a Go duration"))
}

/// Go's `Duration.String()`: `1h2m3.5s`, `0s`, `150ms`.
pub(super) fn go_duration_string(nanos: i128) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u < 1_000_000_000 {
        let (unit, scale) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", trim_fraction(u, scale));
    }
    let hours = u / 3_600_000_000_000;
    let minutes = u / 60_000_000_000 % 60;
    let seconds = trim_fraction(u % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

fn trim_fraction(value: u128, scale: u128) -> String {
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = scale.to_string().len() - 1;
    let text = format!("{whole}.{fraction:0digits$}");
    text.trim_end_matches('0').to_string()
}

/// `duration SECONDS`: Go's form of a number of seconds given as text (sprig
/// reads only text and int64, so a bare number in a template is 0s).
pub(super) fn duration(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let seconds = match a.value(0) {
        Value::String(s) => s.trim().parse::<i64>().unwrap_or(0),
        _ => 0,
    };
    Ok(go::string(go_duration_string(
        i128::from(seconds) * 1_000_000_000,
    )))
}

/// `durationRound DURATION`: the largest whole unit (`2h`, `3mo`, `1y`).
pub(super) fn duration_round(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let nanos: i128 = match a.value(0) {
        Value::String(s) => match as_time(a.value(0)) {
            Some(time) => now().duration_since(&time).as_nanos(),
            None => parse_go_duration(s).unwrap_or(0),
        },
        _ => 0,
    };
    let u = nanos.unsigned_abs();
    const SECOND: u128 = 1_000_000_000;
    let units: [(u128, &str); 6] = [
        (SECOND * 3600 * 24 * 365, "y"),
        (SECOND * 3600 * 24 * 30, "mo"),
        (SECOND * 3600 * 24, "d"),
        (SECOND * 3600, "h"),
        (SECOND * 60, "m"),
        (SECOND, "s"),
    ];
    for (size, unit) in units {
        if u > size {
            return Ok(go::string(format!("{}{unit}", u / size)));
        }
    }
    Ok(go::string("0s"))
}

/// `ago DATE`: how long ago, to the second.
pub(super) fn ago(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let time = as_time(a.value(0)).unwrap_or_else(now);
    let nanos = now().duration_since(&time).as_nanos();
    let rounded = (nanos + nanos.signum() * 500_000_000) / 1_000_000_000 * 1_000_000_000;
    Ok(go::string(go_duration_string(rounded)))
}

/// `unixEpoch DATE`: seconds since 1970.
pub(super) fn unix_epoch(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let time = as_time(a.value(0)).ok_or(Fail::Type {
        index: 0,
        want: "time.Time",
        got: go::kind_name(a.value(0)),
    })?;
    Ok(go::string(time.timestamp().as_second().to_string()))
}

fn to_date_inner(args: &[Value]) -> Result<Option<Value>, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let (layout, text) = (a.string(0)?, a.string(1)?);
    Ok(parse_go(&layout, &text).map(|t| time_value(&t)))
}

/// `toDate LAYOUT TEXT`: TEXT read with a Go layout; Go's zero time if it does
/// not match.
pub(super) fn to_date(args: &[Value]) -> Result<Value, Fail> {
    Ok(to_date_inner(args)?.unwrap_or_else(|| go::string("0001-01-01 00:00:00 +0000 UTC")))
}

/// `mustToDate LAYOUT TEXT`: fails when TEXT does not match.
pub(super) fn must_to_date(args: &[Value]) -> Result<Value, Fail> {
    to_date_inner(args)?.ok_or(Fail::Reason("the text does not match the layout"))
}

/// One element of a Go layout.
enum Element {
    Literal(String),
    Directive(&'static str),
}

/// Go's layout elements, longest first where one is a prefix of another.
const ELEMENTS: &[(&str, &str)] = &[
    ("January", "%B"),
    ("Jan", "%b"),
    ("Monday", "%A"),
    ("Mon", "%a"),
    ("MST", "%Z"),
    ("2006", "%Y"),
    ("-07:00:00", "%::z"),
    ("-0700", "%z"),
    ("-07:00", "%:z"),
    ("-07", "%z"),
    ("Z07:00", "Z%:z"),
    ("Z0700", "Z%z"),
    ("002", "%j"),
    ("01", "%m"),
    ("02", "%d"),
    ("_2", "%e"),
    ("06", "%y"),
    ("15", "%H"),
    ("03", "%I"),
    ("04", "%M"),
    ("05", "%S"),
    ("PM", "%p"),
    ("pm", "%P"),
    (".000000000", "%.9f"),
    (".000000", "%.6f"),
    (".000", "%.3f"),
    (".999999999", "%.f"),
    (".999999", "%.f"),
    (".999", "%.f"),
    ("1", "%-m"),
    ("2", "%-d"),
    ("3", "%-I"),
    ("4", "%-M"),
    ("5", "%-S"),
];

fn elements(layout: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut rest = layout;
    let mut literal = String::new();
    'outer: while !rest.is_empty() {
        for (go, directive) in ELEMENTS {
            if let Some(after) = rest.strip_prefix(go) {
                if !literal.is_empty() {
                    out.push(Element::Literal(std::mem::take(&mut literal)));
                }
                out.push(Element::Directive(directive));
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        literal.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !literal.is_empty() {
        out.push(Element::Literal(literal));
    }
    out
}

/// A time formatted with a Go layout.
fn format_go(layout: &str, time: &Zoned) -> String {
    let utc = time.offset().seconds() == 0;
    elements(layout)
        .into_iter()
        .map(|element| match element {
            Element::Literal(text) => text,
            Element::Directive("%Z") => zone_abbreviation(time),
            Element::Directive(d) if d.starts_with('Z') && utc => "Z".into(),
            Element::Directive(d) => {
                let d = d.strip_prefix('Z').unwrap_or(d);
                match d {
                    "%.f" => {
                        let nanos = time.subsec_nanosecond();
                        if nanos == 0 {
                            String::new()
                        } else {
                            format!(".{nanos:09}").trim_end_matches('0').to_string()
                        }
                    }
                    "%.3f" => format!(".{:03}", time.subsec_nanosecond() / 1_000_000),
                    "%.6f" => format!(".{:06}", time.subsec_nanosecond() / 1_000),
                    "%.9f" => format!(".{:09}", time.subsec_nanosecond()),
                    "%e" => format!("{:>2}", time.day()),
                    _ => time.strftime(d).to_string(),
                }
            }
        })
        .collect()
}

/// Text read with a Go layout, in the local zone unless it names an offset.
fn parse_go(layout: &str, text: &str) -> Option<Zoned> {
    let mut format = String::new();
    let mut has_offset = false;
    for element in elements(layout) {
        match element {
            Element::Literal(literal) => format.push_str(&literal.replace('%', "%%")),
            Element::Directive(d) => {
                let d = d.strip_prefix('Z').unwrap_or(d);
                has_offset |= d.ends_with('z');
                let d = match d {
                    "%.3f" | "%.6f" | "%.9f" => "%.f",
                    "%Z" => continue,
                    other => other,
                };
                format.push_str(d);
            }
        }
    }
    let text = if layout.contains("Z07") {
        text.replacen('Z', "+00:00", 1)
    } else {
        text.to_string()
    };
    let parsed = jiff::fmt::strtime::parse(&format, &text).ok()?;
    if has_offset {
        return parsed.to_zoned().ok();
    }
    let datetime = match parsed.to_datetime() {
        Ok(dt) => dt,
        Err(_) => parsed
            .to_date()
            .ok()?
            .to_datetime(jiff::civil::Time::midnight()),
    };
    datetime.to_zoned(local()).ok()
}
