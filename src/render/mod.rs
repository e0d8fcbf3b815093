//! `secretsync render`: manifests in, Secret manifests out, no cluster. The
//! same sync core as the controller; stores are read from the input, and each
//! store is asked once for everything its ExternalSecrets need. Without the
//! `clients` feature only reading the manifests is here.

pub(crate) mod documents;
mod manifests;
#[cfg(feature = "clients")]
mod output;
#[cfg(feature = "clients")]
mod pipeline;

pub use manifests::{InputError, Inputs, Loaded, Located, Source, load, load_text};

/// The first document of `text` as `render` reads documents: JSON, with a key
/// given twice in a mapping an error (`unseal` and `reseal` read theirs so).
pub fn yaml_document(text: &str) -> Result<serde_json::Value, String> {
    documents::documents(text)
        .into_iter()
        .next()
        .map_or(Ok(serde_json::Value::Null), |document| document.value)
}
#[cfg(feature = "clients")]
pub use output::{OutputFormat, to_stdout_text, write_out_dir};
#[cfg(feature = "clients")]
pub use pipeline::{Rendered, Renderer, render};
