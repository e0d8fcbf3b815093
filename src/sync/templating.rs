//! `target.template`: the Secret's type, labels, annotations and data rendered
//! from the fetched values, with ESO's precedence: `template.data` over
//! `templateFrom` over (with `mergePolicy: Merge`) the fetched values.

use std::collections::{BTreeMap, BTreeSet};

use super::SyncError;
use crate::SecretValue;
use crate::api::{
    ExternalSecretSpec, ExternalSecretTemplate, TemplateMergePolicy, TemplateScope, TemplateTarget,
};
use crate::template::{Context, Template, TemplateError};

/// ConfigMaps and Secrets of the ExternalSecret's namespace that `templateFrom`
/// may read, by name. Drivers load those [`template_source_names`] lists.
#[derive(Default)]
pub struct TemplateSources {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, SecretValue>>,
}

impl TemplateSources {
    /// One key of a ConfigMap or Secret, or what is missing.
    fn text(&self, kind: &str, name: &str, key: &str) -> Result<String, String> {
        let absent = || "not found in the ExternalSecret's namespace".to_string();
        let text = if kind == "ConfigMap" {
            self.config_maps
                .get(name)
                .ok_or_else(absent)?
                .get(key)
                .cloned()
        } else {
            let value = self.secrets.get(name).ok_or_else(absent)?.get(key);
            value.map(|v| String::from_utf8_lossy(v.expose()).into_owned())
        };
        text.ok_or_else(|| format!("has no key {key:?}"))
    }
}

/// Names of the ConfigMaps and Secrets `templateFrom` reads.
pub fn template_source_names(spec: &ExternalSecretSpec) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let template_from = spec.target.template.iter().flat_map(|t| &t.template_from);
    for from in template_from {
        config_maps.extend(from.config_map.iter().map(|r| r.name.clone()));
        secrets.extend(from.secret.iter().map(|r| r.name.clone()));
    }
    (config_maps, secrets)
}

/// The parts of a Secret a template decides.
pub(crate) struct Rendered {
    pub type_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub data: BTreeMap<String, SecretValue>,
}

const DEFAULT_TYPE: &str = "Opaque";
const FIELD: &str = "spec.target.template";

pub(crate) fn apply_template(
    template: &ExternalSecretTemplate,
    fetched: BTreeMap<String, SecretValue>,
    sources: &TemplateSources,
) -> Result<Rendered, SyncError> {
    let mut context = Context::new();
    for (key, value) in &fetched {
        context.insert(key.clone(), value.clone());
    }
    let mut out = Rendered {
        type_: template
            .type_
            .clone()
            .unwrap_or_else(|| DEFAULT_TYPE.into()),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        data: match template.merge_policy {
            TemplateMergePolicy::Merge => fetched.clone(),
            TemplateMergePolicy::Replace => BTreeMap::new(),
        },
    };

    for (i, from) in template.template_from.iter().enumerate() {
        let field = format!("{FIELD}.templateFrom[{i}]");
        let sources_of_kind = [
            ("configMap", "ConfigMap", from.config_map.as_ref()),
            ("secret", "Secret", from.secret.as_ref()),
        ];
        for (name, kind, template_ref) in sources_of_kind {
            let Some(template_ref) = template_ref else {
                continue;
            };
            let missing = |problem: String| SyncError::TemplateSource {
                field: format!("{field}.{name}"),
                kind,
                name: template_ref.name.clone(),
                problem,
            };
            for item in &template_ref.items {
                let text = sources
                    .text(kind, &template_ref.name, &item.key)
                    .map_err(missing)?;
                let field = format!("{field}.{name}.items[{}]", item.key);
                render_into(
                    &mut out,
                    from.target,
                    item.template_as,
                    &item.key,
                    &text,
                    &context,
                    &field,
                )?;
            }
        }
        if let Some(literal) = &from.literal {
            let field = format!("{field}.literal");
            render_into(
                &mut out,
                from.target,
                TemplateScope::KeysAndValues,
                "",
                literal,
                &context,
                &field,
            )?;
        }
    }

    let maps = [
        (TemplateTarget::Data, "data", &template.data),
        (
            TemplateTarget::Labels,
            "metadata.labels",
            &template.metadata.labels,
        ),
        (
            TemplateTarget::Annotations,
            "metadata.annotations",
            &template.metadata.annotations,
        ),
    ];
    for (target, name, map) in maps {
        for (key, text) in map {
            let field = format!("{FIELD}.{name}.{key}");
            render_into(
                &mut out,
                target,
                TemplateScope::Values,
                key,
                text,
                &context,
                &field,
            )?;
        }
    }

    if template.data.is_empty() && template.template_from.is_empty() {
        out.data = fetched;
    }
    Ok(out)
}

/// Renders one template and stores the result: under `key` (`Values`), or as the
/// YAML map of keys to values it produced (`KeysAndValues`).
fn render_into(
    out: &mut Rendered,
    target: TemplateTarget,
    scope: TemplateScope,
    key: &str,
    text: &str,
    context: &Context,
    field: &str,
) -> Result<(), SyncError> {
    let template_error = |error| SyncError::Template {
        field: field.to_string(),
        error,
    };
    let rendered = Template::parse(text)
        .and_then(|t| t.render(context))
        .map_err(template_error)?;
    let entries = match scope {
        TemplateScope::Values => vec![(key.to_string(), rendered)],
        TemplateScope::KeysAndValues => {
            serde_yaml_ng::from_str::<BTreeMap<String, String>>(&rendered)
                .map_err(|_| {
                    // The parser's message would quote the rendered text: leave it out.
                    template_error(TemplateError {
                        location: None,
                        message: "the rendered output is not a YAML map of keys to string values"
                            .into(),
                    })
                })?
                .into_iter()
                .collect()
        }
    };
    for (key, value) in entries {
        match target {
            TemplateTarget::Data => {
                if !crate::api::is_valid_secret_key(&key) {
                    return Err(SyncError::InvalidKey {
                        field: field.to_string(),
                        key,
                    });
                }
                out.data.insert(key, SecretValue::from(value));
            }
            TemplateTarget::Labels => {
                out.labels.insert(key, value);
            }
            TemplateTarget::Annotations => {
                out.annotations.insert(key, value);
            }
        }
    }
    Ok(())
}
