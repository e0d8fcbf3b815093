//! Go-template rendering compatible with ESO's v2 engine: `{{ .key }}`,
//! pipelines and ESO's function map (text/template's builtins, sprig's functions
//! and ESO's own), through gtmpl-ng.
//!
//! Three guarantees hold for every template:
//! - errors never carry a value: they say where the template failed and what
//!   failed, in words chosen here (see [`error`]);
//! - a render stops itself at its deadline and output cap ([`RenderLimits`]);
//! - values and output are bytes, not text: binary values (a keystore, a
//!   `b64dec` result) come out exactly as they went in (see [`bytes`]).

mod bytes;
mod error;
mod functions;
mod limits;
mod pool;

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};

use gtmpl_ng::{Func, Value};

pub use error::{Location, TemplateError};
pub use limits::{Budget, RenderLimits};
pub use pool::RenderPool;

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

/// ESO's function map, built once.
static FUNCTIONS: std::sync::LazyLock<HashMap<String, Func>> = std::sync::LazyLock::new(|| {
    functions::all()
        .map(|(name, f)| (name.to_string(), f))
        .collect()
});

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut inner = gtmpl_ng::Template::default();
        inner.funcs = FUNCTIONS.clone();
        inner.parse(text).map_err(|e| error::from_parse(e, text))?;
        Ok(Self {
            inner,
            source: text.to_string(),
        })
    }

    /// Renders with `context` as `.`, spending from `budget`. A reference to a
    /// missing key is an error, as in ESO (Go's `missingkey=error`).
    pub fn render(
        &mut self,
        context: &Context,
        budget: &mut Budget,
    ) -> Result<SecretValue, TemplateError> {
        let limits = budget.limits();
        let time_left = budget.time_left();
        if time_left.is_some_and(|left| left.is_zero()) {
            return Err(TemplateError::deadline(limits));
        }
        let output_left = budget.output_left();
        let mut engine_limits = gtmpl_ng::Limits::default()
            .with_deadline(time_left)
            .with_output_bytes(output_left);
        // A single function result may be as large as the whole output may
        // (and at least as large as the engine allows by default).
        let engine_default = gtmpl_ng::Limits::DEFAULT.function_output.unwrap_or(0);
        engine_limits.function_output = Some(limits.max_output.max(engine_default));
        self.inner.limits = engine_limits;
        let data = gtmpl_ng::Context::from(context.to_value());
        let rendered = catch_unwind(AssertUnwindSafe(|| self.inner.render(&data)))
            .map_err(|_| TemplateError::new("a template function failed unexpectedly"))?
            .map_err(|e| error::from_exec(e, &self.source, limits))?;
        let output = bytes::to_bytes(&rendered);
        if output.len() > output_left {
            return Err(TemplateError::output_limit(limits));
        }
        budget.spend_output(output.len());
        Ok(SecretValue::new(output))
    }
}

/// Parses and renders in one step.
pub fn render(
    text: &str,
    context: &Context,
    budget: &mut Budget,
) -> Result<SecretValue, TemplateError> {
    Template::parse(text)?.render(context, budget)
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: SecretValue) {
        self.values.insert(name.into(), value);
    }

    fn to_value(&self) -> Value {
        let map = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(bytes::to_text(v.expose()))))
            .collect::<HashMap<_, _>>();
        // An object, not a map: gtmpl then fails on a missing key, as Go does
        // with ESO's `missingkey=error`.
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests;
