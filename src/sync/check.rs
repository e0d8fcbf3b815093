//! Everything about an ExternalSecret that can be checked before fetching:
//! the spec's own rules and that every template parses.

use super::SyncError;
use crate::api::{ExternalSecret, FieldErrors, secret_key_problem};
use crate::template::Template;

/// Checks `es` whole and reports every problem, each naming its field.
pub fn check(es: &ExternalSecret) -> Result<(), SyncError> {
    let mut errors = es.spec.validate().err().unwrap_or_default();
    if es.metadata.name.as_deref().unwrap_or_default().is_empty() {
        errors.push("metadata.name", "must not be empty");
    }
    let mut parses = |field: String, text: &str| {
        if let Err(error) = Template::parse(text) {
            errors.push(field, error.to_string());
        }
    };
    if let Some(template) = &es.spec.target.template {
        let base = "spec.target.template";
        for (key, text) in &template.data {
            parses(format!("{base}.data.{key}"), text);
        }
        for (key, text) in &template.metadata.labels {
            parses(format!("{base}.metadata.labels.{key}"), text);
        }
        for (key, text) in &template.metadata.annotations {
            parses(format!("{base}.metadata.annotations.{key}"), text);
        }
        for (i, from) in template.template_from.iter().enumerate() {
            if let Some(literal) = &from.literal {
                parses(format!("{base}.templateFrom[{i}].literal"), literal);
            }
        }
    }
    for (i, item) in es.spec.data_from.iter().enumerate() {
        for (j, rewrite) in item.rewrite.iter().enumerate() {
            if let Some(transform) = &rewrite.transform {
                parses(
                    format!("spec.dataFrom[{i}].rewrite[{j}].transform.template"),
                    &transform.template,
                );
            }
        }
    }
    if let Some(template) = &es.spec.target.template {
        for key in template.data.keys() {
            if let Some(problem) = secret_key_problem(key) {
                errors.push(
                    format!("spec.target.template.data.{key}"),
                    format!("{key:?} is not a valid Secret key: {problem}"),
                );
            }
        }
    }
    into_result(errors)
}

fn into_result(errors: FieldErrors) -> Result<(), SyncError> {
    errors.into_result().map_err(SyncError::InvalidSpec)
}
