//! `secretsync render`: manifests in, Secret manifests out, no cluster. The
//! same sync core as the controller; stores are read from the input, and each
//! store is asked once for everything its ExternalSecrets need.

mod documents;
mod manifests;
mod output;
mod pipeline;

pub use manifests::{InputError, Inputs, Loaded, Located, Source, load, load_text};
pub use output::{OutputFormat, to_stdout_text, write_out_dir};
pub use pipeline::{Rendered, Renderer, render};
