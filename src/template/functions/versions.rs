//! SemVer, as Masterminds/semver reads versions and constraints.

use std::collections::HashMap;

use gtmpl_ng::Value;

use super::Fail;
use super::go::{self, Args};

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
