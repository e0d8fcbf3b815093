//! sprig's list, logic, number, path, URL, SemVer and random functions that
//! gtmpl-ng lacks or renders differently.

use std::collections::HashMap;

use gtmpl_ng::Value;
use rand::Rng;

use super::Fail;
use super::go::{self, Args, is_empty, strval};

/// `tuple ARGS...`: a list (sprig's other name for `list`).
pub(super) fn tuple(args: &[Value]) -> Result<Value, Fail> {
    Ok(Value::Array(args.to_vec()))
}

/// `all ARGS...`: whether no argument is empty.
pub(super) fn all(args: &[Value]) -> Result<Value, Fail> {
    Ok(Value::Bool(args.iter().all(|v| !is_empty(v))))
}

/// `any ARGS...`: whether some argument is not empty.
pub(super) fn any(args: &[Value]) -> Result<Value, Fail> {
    Ok(Value::Bool(args.iter().any(|v| !is_empty(v))))
}

/// `typeIsLike TYPE VALUE`: `typeIs`, with `*T` matching `T` too.
pub(super) fn type_is_like(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let want = a.string(0)?;
    let got = go_type_name(a.value(1));
    Ok(Value::Bool(want == got || want == format!("*{got}")))
}

/// Go's `%T` of a value as templates see it.
pub(super) fn go_type_name(value: &Value) -> &'static str {
    match value {
        Value::NoValue | Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Object(_) | Value::Map(_) => "map[string]interface {}",
        Value::Array(_) => "[]interface {}",
        Value::Function(_) => "func",
        Value::Number(n) => match n.kind() {
            gtmpl_ng::NumberKind::Float(_) => "float64",
            _ => "int",
        },
    }
}

/// `toDecimal VALUE`: VALUE read as an octal number (`"777"` is 511); 0 if it
/// is not one.
pub(super) fn to_decimal(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let text = strval(a.value(0));
    Ok(go::int(parse_octal(&text).unwrap_or(0)))
}

/// `strconv.ParseInt(s, 8, 64)`.
fn parse_octal(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let n = i64::from_str_radix(digits, 8).ok()?;
    if negative { n.checked_neg() } else { Some(n) }
}

/// `randInt MIN MAX`: a random integer in [MIN, MAX).
pub(super) fn rand_int(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let (min, max) = (a.int(0)?, a.int(1)?);
    if max <= min {
        return Err(Fail::Reason("MAX must be greater than MIN"));
    }
    Ok(go::int(rand::thread_rng().gen_range(min..max)))
}

/// `randBytes COUNT`: COUNT random bytes, base64-encoded.
pub(super) fn rand_bytes(args: &[Value]) -> Result<Value, Fail> {
    use base64::Engine;
    let a = Args::exactly(args, 1, "1")?;
    let count = gtmpl_ng::helm_functions::bounded_count(a.int(0)?, "bytes", "randBytes")?;
    let mut bytes = vec![0u8; count];
    rand::thread_rng().fill(bytes.as_mut_slice());
    Ok(go::string(
        base64::engine::general_purpose::STANDARD.encode(bytes),
    ))
}

/// `chunk SIZE LIST`: LIST in pieces of SIZE items.
pub(super) fn chunk(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let size = usize::try_from(a.int(0)?).unwrap_or(0);
    let Value::Array(items) = a.value(1) else {
        return Err(Fail::Reason("the second argument must be a list"));
    };
    if size == 0 {
        return Err(Fail::Reason("the chunk size must be at least 1"));
    }
    Ok(Value::Array(
        items
            .chunks(size)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}

// Paths: Go's `path/filepath` on Linux is `path`.

fn path_arg(args: &[Value]) -> Result<String, Fail> {
    Args::exactly(args, 1, "1")?.string(0)
}

/// Go's `path.Clean`.
pub(super) fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

pub(super) fn os_base(args: &[Value]) -> Result<Value, Fail> {
    let path = path_arg(args)?;
    let trimmed = path.trim_end_matches('/');
    Ok(go::string(if path.is_empty() {
        "."
    } else if trimmed.is_empty() {
        "/"
    } else {
        trimmed.rsplit('/').next().unwrap_or(trimmed)
    }))
}

pub(super) fn os_clean(args: &[Value]) -> Result<Value, Fail> {
    Ok(go::string(clean_path(&path_arg(args)?)))
}

pub(super) fn os_dir(args: &[Value]) -> Result<Value, Fail> {
    let path = path_arg(args)?;
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "",
    };
    Ok(go::string(clean_path(dir)))
}

pub(super) fn os_ext(args: &[Value]) -> Result<Value, Fail> {
    let path = path_arg(args)?;
    let last = path.rsplit('/').next().unwrap_or_default();
    Ok(go::string(last.rfind('.').map_or("", |i| &last[i..])))
}

pub(super) fn os_is_abs(args: &[Value]) -> Result<Value, Fail> {
    Ok(Value::Bool(path_arg(args)?.starts_with('/')))
}

// URLs

/// `urlParse URL`: its parts, as sprig's map (`scheme`, `host`, `hostname`,
/// `path`, `query`, `opaque`, `fragment`, `userinfo`).
pub(super) fn url_parse(args: &[Value]) -> Result<Value, Fail> {
    let text = Args::exactly(args, 1, "1")?.string(0)?;
    let parts: [(&str, String); 8] = match url::Url::parse(&text) {
        Ok(url) => {
            let userinfo = match (url.username(), url.password()) {
                ("", None) => String::new(),
                (user, None) => user.to_string(),
                (user, Some(password)) => format!("{user}:{password}"),
            };
            let hostname = url.host_str().unwrap_or_default().to_string();
            let host = match url.port() {
                Some(port) => format!("{hostname}:{port}"),
                None => hostname.clone(),
            };
            let (path, opaque) = if url.cannot_be_a_base() {
                (String::new(), url.path().to_string())
            } else {
                (percent_decode(url.path()), String::new())
            };
            [
                ("scheme", url.scheme().to_string()),
                ("host", host),
                ("hostname", hostname),
                ("path", path),
                ("query", url.query().unwrap_or_default().to_string()),
                ("opaque", opaque),
                (
                    "fragment",
                    percent_decode(url.fragment().unwrap_or_default()),
                ),
                ("userinfo", userinfo),
            ]
        }
        // A reference without a scheme: Go reads it as a path.
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let (rest, fragment) = text.split_once('#').unwrap_or((&text, ""));
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            [
                ("scheme", String::new()),
                ("host", String::new()),
                ("hostname", String::new()),
                ("path", percent_decode(path)),
                ("query", query.to_string()),
                ("opaque", String::new()),
                ("fragment", percent_decode(fragment)),
                ("userinfo", String::new()),
            ]
        }
        Err(_) => return Err(Fail::Reason("the text is not a valid URL")),
    };
    Ok(Value::Map(
        parts
            .into_iter()
            .map(|(k, v)| (k.to_string(), go::string(v)))
            .collect(),
    ))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `urlJoin MAP`: the URL made of the parts `urlParse` gives.
pub(super) fn url_join(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let (Value::Map(parts) | Value::Object(parts)) = a.value(0) else {
        return Err(Fail::Reason("the argument must be a map of URL parts"));
    };
    let part = |name: &str| parts.get(name).map(strval).unwrap_or_default();
    let (scheme, host, path) = (part("scheme"), part("host"), part("path"));
    let (userinfo, opaque) = (part("userinfo"), part("opaque"));
    let (query, fragment) = (part("query"), part("fragment"));
    let mut out = String::new();
    if !scheme.is_empty() {
        out.push_str(&scheme);
        out.push(':');
    }
    if !opaque.is_empty() {
        out.push_str(&opaque);
    } else {
        if !scheme.is_empty() || !host.is_empty() || !userinfo.is_empty() {
            if !host.is_empty() || !path.is_empty() || !userinfo.is_empty() {
                out.push_str("//");
            }
            if !userinfo.is_empty() {
                out.push_str(&userinfo);
                out.push('@');
            }
            out.push_str(&host);
        }
        if !path.is_empty() && !path.starts_with('/') && !host.is_empty() {
            out.push('/');
        }
        out.push_str(&path);
    }
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    if !fragment.is_empty() {
        out.push('#');
        out.push_str(&fragment);
    }
    Ok(go::string(out))
}

// SemVer, as Masterminds/semver reads versions and constraints.

/// A version as Masterminds reads one: `v` prefix allowed, missing minor and
/// patch read as 0.
fn lenient_version(text: &str) -> Option<semver::Version> {
    let text = text.trim().trim_start_matches(['v', 'V']);
    if let Ok(version) = semver::Version::parse(text) {
        return Some(version);
    }
    let (core, suffix) = match text.find(['-', '+']) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let mut parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    while parts.len() < 3 {
        parts.push("0");
    }
    semver::Version::parse(&format!("{}{suffix}", parts.join("."))).ok()
}

/// `semver TEXT`: the version's parts (`Major`, `Minor`, `Patch`,
/// `Prerelease`, `Metadata`, `Original`).
pub(super) fn semver_parse(args: &[Value]) -> Result<Value, Fail> {
    let text = Args::exactly(args, 1, "1")?.string(0)?;
    let version =
        lenient_version(&text).ok_or(Fail::Reason("the text is not a semantic version"))?;
    Ok(Value::Map(HashMap::from([
        ("Major".to_string(), go::int(version.major as i64)),
        ("Minor".to_string(), go::int(version.minor as i64)),
        ("Patch".to_string(), go::int(version.patch as i64)),
        ("Prerelease".to_string(), go::string(version.pre.as_str())),
        ("Metadata".to_string(), go::string(version.build.as_str())),
        ("Original".to_string(), go::string(text)),
    ])))
}

/// `semverCompare CONSTRAINT VERSION`: whether VERSION meets CONSTRAINT
/// (`>= 1.2, < 2`, `^1.4`, `~1.2.3`, `1.2.x`, `1.0 - 1.4`, `a || b`).
pub(super) fn semver_compare(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let constraint = a.string(0)?;
    let version = lenient_version(&a.string(1)?)
        .ok_or(Fail::Reason("the version is not a semantic version"))?;
    for alternative in constraint.split("||") {
        let requirements = translate_constraint(alternative).ok_or(Fail::Reason(
            "the constraint is not a valid SemVer constraint",
        ))?;
        if requirements.iter().all(|r| r.matches(&version)) {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

/// One `||` branch of a Masterminds constraint as Cargo-style requirements.
fn translate_constraint(text: &str) -> Option<Vec<Requirement>> {
    let normalized = text.replace(',', " ");
    let tokens: Vec<&str> = normalized.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        // `1.0 - 1.4`: a hyphen range.
        if tokens.get(i + 1) == Some(&"-") {
            let (low, high) = (tokens.get(i)?, tokens.get(i + 2)?);
            out.push(Requirement::Req(
                semver::VersionReq::parse(&format!(">={}, <={}", pad(low), pad(high))).ok()?,
            ));
            i += 3;
            continue;
        }
        let mut token = tokens[i].to_string();
        // An operator written apart from its version: `>= 1.2`.
        if token.chars().all(|c| "<>=!~^".contains(c)) {
            token.push_str(tokens.get(i + 1)?);
            i += 1;
        }
        i += 1;
        let op_len = token
            .find(|c: char| !"<>=!~^".contains(c))
            .unwrap_or(token.len());
        let (op, version) = token.split_at(op_len);
        let version = version
            .trim_start_matches(['v', 'V'])
            .replace(['x', 'X'], "*");
        let req = match op {
            "!=" => Requirement::Not(lenient_version(&version)?),
            "" | "=" if !version.contains('*') => {
                Requirement::Req(semver::VersionReq::parse(&format!("={}", pad(&version))).ok()?)
            }
            "=<" => Requirement::Req(semver::VersionReq::parse(&format!("<={version}")).ok()?),
            "=>" => Requirement::Req(semver::VersionReq::parse(&format!(">={version}")).ok()?),
            op => Requirement::Req(semver::VersionReq::parse(&format!("{op}{version}")).ok()?),
        };
        out.push(req);
    }
    Some(out)
}

fn pad(version: &str) -> String {
    let version = version.trim_start_matches(['v', 'V']);
    let dots = version
        .split(['-', '+'])
        .next()
        .unwrap_or(version)
        .matches('.')
        .count();
    match dots {
        0 => format!("{version}.0.0"),
        1 => format!("{version}.0"),
        _ => version.to_string(),
    }
}

enum Requirement {
    Req(semver::VersionReq),
    Not(semver::Version),
}

impl Requirement {
    fn matches(&self, version: &semver::Version) -> bool {
        match self {
            Requirement::Req(req) => req.matches(version),
            Requirement::Not(other) => other != version,
        }
    }
}

// Integer math, with spf13/cast's conversions (`add "2" 3` is 5, and text
// that is no number counts as 0), as sprig does.

use super::go::to_int64;

fn fold(args: &[Value], start: i64, op: fn(i64, i64) -> Option<i64>) -> Result<Value, Fail> {
    args.iter()
        .try_fold(start, |acc, v| op(acc, to_int64(v)))
        .map(go::int)
        .ok_or(Fail::Reason("integer overflow"))
}

/// `add ARGS...`.
pub(super) fn add(args: &[Value]) -> Result<Value, Fail> {
    fold(args, 0, i64::checked_add)
}

/// `add1 N`.
pub(super) fn add1(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    fold(&[a.value(0).clone(), go::int(1)], 0, i64::checked_add)
}

/// `mul A ARGS...`.
pub(super) fn mul(args: &[Value]) -> Result<Value, Fail> {
    Args::at_least(args, 1, "at least 1")?;
    fold(args, 1, i64::checked_mul)
}

fn binary(
    args: &[Value],
    op: fn(i64, i64) -> Option<i64>,
    zero: &'static str,
) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    op(to_int64(a.value(0)), to_int64(a.value(1)))
        .map(go::int)
        .ok_or(Fail::Reason(zero))
}

/// `sub A B`.
pub(super) fn sub(args: &[Value]) -> Result<Value, Fail> {
    binary(args, i64::checked_sub, "integer overflow")
}

/// `div A B`.
pub(super) fn div(args: &[Value]) -> Result<Value, Fail> {
    binary(args, i64::checked_div, "integer divide by zero")
}

/// `mod A B`.
pub(super) fn modulo(args: &[Value]) -> Result<Value, Fail> {
    binary(args, i64::checked_rem, "integer divide by zero")
}

/// `max A ARGS...` (and `biggest`).
pub(super) fn max(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    Ok(go::int(a.rest(0).iter().map(to_int64).max().unwrap_or(0)))
}

/// `min A ARGS...`.
pub(super) fn min(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    Ok(go::int(a.rest(0).iter().map(to_int64).min().unwrap_or(0)))
}

// sprig functions gtmpl-ng renders differently.

/// `default DEFAULT [VALUE]`: DEFAULT when VALUE is absent or empty.
pub(super) fn default(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    Ok(match a.rest(1).first() {
        Some(given) if !is_empty(given) => given.clone(),
        _ => a.value(0).clone(),
    })
}

/// `compact LIST` (and `mustCompact`): the items that are not empty.
pub(super) fn compact(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let Value::Array(items) = a.value(0) else {
        return Err(Fail::Reason("the argument must be a list"));
    };
    Ok(Value::Array(
        items.iter().filter(|v| !is_empty(v)).cloned().collect(),
    ))
}

/// `has NEEDLE LIST` (and `mustHas`).
pub(super) fn has(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    Ok(Value::Bool(match a.value(1) {
        Value::Array(items) => items.iter().any(|v| v == a.value(0)),
        Value::Nil | Value::NoValue => false,
        _ => return Err(Fail::Reason("the second argument must be a list")),
    }))
}

fn as_map(value: &Value) -> Option<&HashMap<String, Value>> {
    match value {
        Value::Map(m) | Value::Object(m) => Some(m),
        _ => None,
    }
}

/// `pluck KEY DICTS...`: KEY's value in every dict that has it.
pub(super) fn pluck(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    let key = a.string(0)?;
    Ok(Value::Array(
        a.rest(1)
            .iter()
            .filter_map(|d| as_map(d).and_then(|m| m.get(&key)).cloned())
            .collect(),
    ))
}

fn deep_merge(dst: &mut HashMap<String, Value>, src: &HashMap<String, Value>, overwrite: bool) {
    for (key, value) in src {
        match (dst.get_mut(key), as_map(value)) {
            (Some(Value::Map(d) | Value::Object(d)), Some(s)) => deep_merge(d, s, overwrite),
            (Some(existing), _) => {
                if overwrite && !is_empty(value) || is_empty(existing) && !overwrite {
                    *existing = value.clone();
                }
            }
            (None, _) => {
                dst.insert(key.clone(), value.clone());
            }
        }
    }
}

fn merge_with(args: &[Value], overwrite: bool) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    let mut dst = as_map(a.value(0))
        .cloned()
        .ok_or(Fail::Reason("every argument must be a dict"))?;
    for src in a.rest(1) {
        let src = as_map(src).ok_or(Fail::Reason("every argument must be a dict"))?;
        deep_merge(&mut dst, src, overwrite);
    }
    Ok(Value::Map(dst))
}

/// `merge DST SRCS...`: DST's keys win (mergo's default).
pub(super) fn merge(args: &[Value]) -> Result<Value, Fail> {
    merge_with(args, false)
}

/// `mergeOverwrite DST SRCS...`: later keys win.
pub(super) fn merge_overwrite(args: &[Value]) -> Result<Value, Fail> {
    merge_with(args, true)
}

/// `dig KEYS... DEFAULT DICT`: the value at the path, or DEFAULT.
pub(super) fn dig(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 3, "at least 3")?;
    let n = a.len();
    let default = a.value(n - 2);
    let mut at = a.value(n - 1);
    for key in &args[..n - 2] {
        let key = strval(key);
        match as_map(at).and_then(|m| m.get(&key)) {
            Some(next) => at = next,
            None => return Ok(default.clone()),
        }
    }
    Ok(at.clone())
}

/// `typeOf VALUE`: Go's `%T`.
pub(super) fn type_of(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(go_type_name(a.value(0))))
}

/// `kindOf VALUE`: Go's `reflect.Kind`.
pub(super) fn kind_of(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(go::kind_name(a.value(0))))
}

/// `clean PATH`: Go's `path.Clean`.
pub(super) fn clean(args: &[Value]) -> Result<Value, Fail> {
    Ok(go::string(clean_path(&path_arg(args)?)))
}

/// `seq ...`: Unix `seq`, as sprig writes it.
pub(super) fn seq(args: &[Value]) -> Result<Value, Fail> {
    let params: Vec<i64> = args.iter().map(to_int64).collect();
    let run = |start: i64, end: i64, step: i64| -> Result<String, Fail> {
        let mut out = Vec::new();
        let mut i = start;
        let limit = gtmpl_ng::Limits::DEFAULT.iterations.unwrap_or(10_000);
        while (step > 0 && i < end) || (step < 0 && i > end) {
            if out.len() >= limit {
                return Err(Fail::Reason("seq asks for more numbers than allowed"));
            }
            out.push(i.to_string());
            i = i
                .checked_add(step)
                .ok_or(Fail::Reason("integer overflow"))?;
        }
        Ok(out.join(" "))
    };
    let text = match params.as_slice() {
        [end] => {
            let inc = if *end < 1 { -1 } else { 1 };
            run(1, end + inc, inc)?
        }
        [start, end] => {
            let step = if end < start { -1 } else { 1 };
            run(*start, end + step, step)?
        }
        [start, step, end] => {
            if end < start && *step > 0 {
                String::new()
            } else {
                let inc = if end < start { -1 } else { 1 };
                run(*start, end + inc, *step)?
            }
        }
        _ => String::new(),
    };
    Ok(go::string(text))
}

/// `len VALUE`: Go counts a string's bytes.
pub(super) fn len(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    match a.value(0) {
        Value::String(_) => Ok(go::int(a.bytes(0)?.len() as i64)),
        Value::Array(items) => Ok(go::int(items.len() as i64)),
        Value::Map(m) | Value::Object(m) => Ok(go::int(m.len() as i64)),
        _ => Err(Fail::Reason("len of a value that has no length")),
    }
}

fn regex_arg(a: &Args<'_>, i: usize) -> Result<regex::Regex, Fail> {
    regex::Regex::new(&a.string(i)?)
        .map_err(|_| Fail::Reason("the regular expression does not parse"))
}

/// `regexReplaceAll REGEX TEXT REPLACEMENT` (`$1` expands; and `must...`).
pub(super) fn regex_replace_all(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    let re = regex_arg(&a, 0)?;
    Ok(go::string(
        re.replace_all(&a.string(1)?, a.string(2)?.as_str())
            .into_owned(),
    ))
}

/// `regexReplaceAllLiteral REGEX TEXT REPLACEMENT` (no expansion).
pub(super) fn regex_replace_all_literal(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    let re = regex_arg(&a, 0)?;
    let replacement = a.string(2)?;
    Ok(go::string(
        re.replace_all(&a.string(1)?, regex::NoExpand(&replacement))
            .into_owned(),
    ))
}

fn float_fold(args: &[Value], first: f64, op: fn(f64, f64) -> f64) -> Value {
    let result = args.iter().map(go::to_float64).fold(first, op);
    // shopspring/decimal keeps decimal digits exact; 15 significant digits
    // hide the binary noise f64 adds (`1.5 + 2.2`).
    let rounded: f64 = format!("{result:.15e}").parse().unwrap_or(result);
    go::float(rounded)
}

/// `addf ARGS...`.
pub(super) fn addf(args: &[Value]) -> Result<Value, Fail> {
    Ok(float_fold(args, 0.0, |a, b| a + b))
}

/// `add1f N`.
pub(super) fn add1f(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(float_fold(
        &[go::float(1.0)],
        go::to_float64(a.value(0)),
        |a, b| a + b,
    ))
}

fn float_chain(args: &[Value], op: fn(f64, f64) -> f64) -> Result<Value, Fail> {
    let a = Args::at_least(args, 1, "at least 1")?;
    Ok(float_fold(a.rest(1), go::to_float64(a.value(0)), op))
}

/// `subf A ARGS...`.
pub(super) fn subf(args: &[Value]) -> Result<Value, Fail> {
    float_chain(args, |a, b| a - b)
}

/// `mulf A ARGS...`.
pub(super) fn mulf(args: &[Value]) -> Result<Value, Fail> {
    float_chain(args, |a, b| a * b)
}

/// `divf A ARGS...`.
pub(super) fn divf(args: &[Value]) -> Result<Value, Fail> {
    float_chain(args, |a, b| a / b)
}

/// `first LIST` (and `mustFirst`): nil for an empty list.
pub(super) fn first(args: &[Value]) -> Result<Value, Fail> {
    end_of(args, |items| items.first())
}

/// `last LIST` (and `mustLast`): nil for an empty list.
pub(super) fn last(args: &[Value]) -> Result<Value, Fail> {
    end_of(args, |items| items.last())
}

fn end_of(args: &[Value], pick: fn(&[Value]) -> Option<&Value>) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    match a.value(0) {
        Value::Array(items) => Ok(pick(items).cloned().unwrap_or(Value::NoValue)),
        Value::Nil | Value::NoValue => Ok(Value::NoValue),
        _ => Err(Fail::Reason("the argument must be a list")),
    }
}

/// sprig's `untilStep`, bounded as `{{ range }}` is.
fn until_step_list(start: i64, stop: i64, step: i64) -> Result<Value, Fail> {
    let limit = gtmpl_ng::Limits::DEFAULT.iterations.unwrap_or(10_000);
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && stop < start && i > stop) {
        if out.len() >= limit {
            return Err(Fail::Reason("asks for more elements than allowed"));
        }
        out.push(go::int(i));
        i = i
            .checked_add(step)
            .ok_or(Fail::Reason("integer overflow"))?;
    }
    Ok(Value::Array(out))
}

/// `until N`: 0 up (or down) to N, N excluded.
pub(super) fn until(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let count = a.int(0)?;
    until_step_list(0, count, if count < 0 { -1 } else { 1 })
}

/// `untilStep START STOP STEP`.
pub(super) fn until_step(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    until_step_list(a.int(0)?, a.int(1)?, a.int(2)?)
}
