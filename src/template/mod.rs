//! Go-template rendering compatible with ESO's v2 engine: `{{ .key }}`,
//! pipelines and sprig-style functions, through gtmpl-ng and its Helm functions.
//!
//! Template error text can quote the data a template was given (gtmpl prints
//! operands, e.g. "unable to compare X and Y"), so every error is scrubbed of the
//! context's values before it leaves this module.

mod functions;

use std::collections::BTreeMap;
use std::fmt;

use gtmpl_ng::{ErrorContext, ExecError, ParseError, TemplateError as GtmplError, Value};

use crate::SecretValue;

/// A parsed template, ready to render many times.
pub struct Template {
    inner: gtmpl_ng::Template,
    source: String,
}

/// What a template sees as `.`: a map of names to values.
#[derive(Default)]
pub struct Context {
    values: BTreeMap<String, SecretValue>,
}

/// A template that failed to parse or render, with where it failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
pub struct TemplateError {
    pub location: Option<Location>,
    /// Scrubbed of every value the context held.
    pub message: String,
}

/// A position in a template, 1-based, with the construct that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    /// The template text at that position (template text, never a value).
    pub snippet: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)?;
        if !self.snippet.is_empty() {
            write!(f, " near `{}`", self.snippet)?;
        }
        Ok(())
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut inner = gtmpl_ng::Template::default();
        inner.add_funcs(gtmpl_ng::helm_functions::HELM_FUNCTIONS);
        inner.add_funcs(functions::EXTRA_FUNCTIONS);
        inner
            .parse(text)
            .map_err(|e| error_from_gtmpl(GtmplError::ParseError(e), text, &Context::default()))?;
        Ok(Self {
            inner,
            source: text.to_string(),
        })
    }

    /// Renders with `context` as `.`. A reference to a missing key is an error,
    /// as in ESO (Go's `missingkey=error`).
    pub fn render(&self, context: &Context) -> Result<String, TemplateError> {
        self.inner
            .render(&gtmpl_ng::Context::from(context.to_value()))
            .map_err(|e| error_from_gtmpl(GtmplError::ExecError(e), &self.source, context))
    }
}

/// Parses and renders in one step.
pub fn render(text: &str, context: &Context) -> Result<String, TemplateError> {
    Template::parse(text)?.render(context)
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: SecretValue) {
        self.values.insert(name.into(), value);
    }

    /// Values that are not UTF-8 are given to the template with invalid bytes
    /// replaced (gtmpl strings are UTF-8); use them through the Secret data, not
    /// through a template.
    fn to_value(&self) -> Value {
        let map = self
            .values
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Value::from(String::from_utf8_lossy(v.expose()).into_owned()),
                )
            })
            .collect::<std::collections::HashMap<_, _>>();
        // An object, not a map: gtmpl then fails on a missing key, as Go does
        // with ESO's `missingkey=error`.
        Value::Object(map)
    }

    /// Every text that error messages must not carry: each value, each line of
    /// it, and each string inside it when it is JSON.
    fn redactions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for value in self.values.values() {
            let text = String::from_utf8_lossy(value.expose()).into_owned();
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
                collect_json_strings(&json, &mut out);
            }
            out.extend(text.lines().map(str::to_string));
            out.push(text);
        }
        // Longest first, so a value is removed whole before any part of it.
        out.retain(|s| s.trim().len() >= MIN_REDACTED_LEN);
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out.dedup();
        out
    }
}

/// Shorter fragments carry no secret and would shred ordinary words.
const MIN_REDACTED_LEN: usize = 3;
const REDACTED: &str = "<redacted>";

fn collect_json_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_json_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_json_strings(v, out)),
        other => out.push(other.to_string()),
    }
}

fn scrub(message: &str, context: &Context) -> String {
    context
        .redactions()
        .iter()
        .fold(message.to_string(), |text, secret| {
            text.replace(secret.as_str(), REDACTED)
        })
}

fn error_from_gtmpl(error: GtmplError, source: &str, context: &Context) -> TemplateError {
    let (position, message) = match &error {
        GtmplError::ParseError(ParseError::WithContext(position, message)) => {
            (Some(position.clone()), message.clone())
        }
        GtmplError::ExecError(ExecError::Structured(structured)) => {
            (Some(structured.context.clone()), structured.message.clone())
        }
        other => (None, other.to_string()),
    };
    TemplateError {
        location: position.map(|p| location_in(source, &p)),
        message: scrub(&without_operand_dump(&message), context),
    }
}

/// "no field `x` in map[...whole context...]" names the key; the rest is data.
fn without_operand_dump(message: &str) -> String {
    match message
        .strip_prefix("no field `")
        .and_then(|rest| rest.split_once("` in "))
    {
        Some((key, _)) => format!("key {key:?} is not in the data"),
        None => message.to_string(),
    }
}

fn location_in(source: &str, position: &ErrorContext) -> Location {
    let snippet = source
        .lines()
        .nth(position.line.saturating_sub(1))
        .and_then(|line| {
            let start = position.col.saturating_sub(1);
            line.get(start..(start + position.len).min(line.len()))
        })
        .unwrap_or_default()
        .to_string();
    Location {
        line: position.line,
        column: position.col,
        snippet,
    }
}

#[cfg(test)]
mod tests;
