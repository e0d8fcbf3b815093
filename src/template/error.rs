//! Template errors that cannot carry a value.
//!
//! gtmpl's messages quote the data they failed on ("unable to compare <value>
//! and 3", "range can't iterate over <value>", a `fail` message made of data),
//! so none of them is passed on. An error says where it happened (line, column
//! and the template's own text there) and what failed, in words chosen here:
//! a function's failure names the function (see [`super::functions`]); the
//! engine's own failures are recognised by their fixed wording and described
//! again; anything not recognised is reported as a failure at that position.

use std::fmt;
use std::time::Duration;

use gtmpl_ng::{ErrorContext, ExecError, ParseError};

use super::functions;
use super::limits::RenderLimits;

/// A template that failed to parse or render: where, and what failed. Never
/// holds data the template was given nor output it produced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
pub struct TemplateError {
    pub location: Option<Location>,
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

impl TemplateError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            location: None,
            message: message.into(),
        }
    }

    pub(crate) fn deadline(limits: RenderLimits) -> Self {
        Self::new(format!(
            "the templates did not finish within the {} deadline (--template-timeout)",
            go_duration(limits.timeout)
        ))
    }

    pub(crate) fn output_limit(limits: RenderLimits) -> Self {
        Self::new(format!(
            "the templates wrote more than the {}-byte output limit (--template-max-output)",
            limits.max_output
        ))
    }
}

/// A parse error. The parser quotes only template text, which is not data.
pub(super) fn from_parse(error: ParseError, source: &str) -> TemplateError {
    let (position, message) = match error {
        ParseError::WithContext(position, message) => (Some(position), message),
        other => (None, other.to_string()),
    };
    let message = match message
        .strip_prefix("function ")
        .and_then(|rest| rest.strip_suffix(" not defined"))
        .and_then(|name| functions::REFUSED.iter().find(|(n, _)| *n == name))
    {
        Some((name, why)) => format!("function {name:?} is not available in templates: {why}"),
        None => message,
    };
    TemplateError {
        location: position.map(|p| location_in(source, &p)),
        message,
    }
}

/// An execution error, described without any of the engine's text that could
/// hold a value.
pub(super) fn from_exec(error: ExecError, source: &str, limits: RenderLimits) -> TemplateError {
    // The engine's text is only read here, to recognise the error; it is never
    // passed on.
    let (position, message) = match &error {
        ExecError::Structured(structured) => {
            (Some(structured.context.clone()), structured.message.clone())
        }
        other => (None, other.to_string()),
    };
    let location = position.map(|p| location_in(source, &p));
    let snippet = location.as_ref().map(|l| l.snippet.as_str()).unwrap_or("");
    let described = describe(&message, snippet);
    match described {
        Described::Deadline => TemplateError::deadline(limits),
        Described::Output => TemplateError::output_limit(limits),
        Described::Message(message) => TemplateError { location, message },
    }
}

enum Described {
    Deadline,
    Output,
    Message(String),
}

fn describe(message: &str, snippet: &str) -> Described {
    use Described::Message;
    if let Some((name, reason)) = functions::parse_failure(message) {
        return Message(if reason.is_empty() {
            format!("function {name:?} failed")
        } else {
            format!("function {name:?} failed: {reason}")
        });
    }
    if message.starts_with("the render did not finish within") {
        return Described::Deadline;
    }
    if message.starts_with("the render would write more than")
        || message.contains("over its output budget")
    {
        return Described::Output;
    }
    if let Some(rest) = message.strip_prefix("no field `") {
        // The key is the template's own text; say it only when the snippet shows
        // it, so a key built from data (`index . .x` fails elsewhere) never is.
        return Message(match rest.split_once('`') {
            Some((key, _)) if !key.is_empty() && snippet.contains(key) => {
                format!("key {key:?} is not in the data")
            }
            _ => "a key is not in the data".into(),
        });
    }
    let fixed: &[(&str, &str)] = &[
        (
            "only maps and objects have fields",
            "only a map has fields, and this value is not one",
        ),
        (
            "range can't iterate over",
            "range cannot iterate over this value (not a list, map or number)",
        ),
        (
            "can't use ",
            "range over this value takes one variable, not two",
        ),
        ("template ", "no template of that name is defined"),
        ("variable ", "the variable is not defined"),
        (
            "pipeline must yield a String",
            "the template name must be a string",
        ),
        (
            "can't give argument to non-function",
            "arguments given to something that is not a function",
        ),
        (
            "exceeded the maximum template nesting depth",
            "templates nested too deeply",
        ),
        (
            "range over ",
            "range asks for more iterations than the engine allows",
        ),
        (
            "the render would run more than",
            "the templates ran more loop iterations than the engine allows",
        ),
        (
            "a function produced a value larger than",
            "a function produced a value larger than the engine allows",
        ),
        (
            "a function produced a value nested deeper than",
            "a function produced a value nested deeper than the engine allows",
        ),
    ];
    if message.contains("has arguments but cannot be invoked as function") {
        return Message("a field was given arguments, but it is not a function".into());
    }
    if message.ends_with(" overflows int") {
        return Message("the range count overflows int".into());
    }
    for (prefix, description) in fixed {
        if message.starts_with(prefix) {
            return Message((*description).to_string());
        }
    }
    Message("the template failed here".into())
}

/// The template text of the construct at `position`, shortened to one line.
fn location_in(source: &str, position: &ErrorContext) -> Location {
    const MAX_SNIPPET: usize = 80;
    let line = source
        .lines()
        .nth(position.line.saturating_sub(1))
        .unwrap_or_default();
    let start = position.col.saturating_sub(1);
    let end = start.saturating_add(position.len).min(line.len());
    let mut snippet = line.get(start..end).unwrap_or_default().to_string();
    if snippet.chars().count() > MAX_SNIPPET {
        snippet = snippet.chars().take(MAX_SNIPPET).collect::<String>() + "…";
    }
    Location {
        line: position.line,
        column: position.col,
        snippet,
    }
}

/// `5s`, `1m30s`, `250ms`: how the flag is written.
fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs();
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let sub = duration.subsec_millis();
    let s = if sub == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{sub:03}s")
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}
