//! `secretsync render`: manifests in, Secret manifests out, no cluster. The
//! same sync core as the controller; stores are read from the input, and each
//! store is asked once for everything its ExternalSecrets need. Without the
//! `clients` feature only reading the manifests is here.

mod documents;
mod manifests;
#[cfg(feature = "clients")]
mod output;
#[cfg(feature = "clients")]
mod pipeline;

pub use manifests::{InputError, Inputs, Loaded, Located, Source, load, load_text};
#[cfg(feature = "clients")]
pub use output::{OutputFormat, to_stdout_text, write_out_dir};
#[cfg(feature = "clients")]
pub use pipeline::{Rendered, Renderer, render};
