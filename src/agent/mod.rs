//! Agent mode: secrets as files in a pod, as a sidecar (refreshing) or an init
//! container (`--once`). The config ([`config`]) lists ASCP objects
//! ([`objects`]) and/or ExternalSecrets; values come through the same providers
//! and sync core as the controller's; files are written with the kubelet's
//! atomic-write convention ([`writer`]); a change can signal a process or run a
//! command ([`notify`]). A failed refresh leaves the current files as they are.
//! Beside the files, or instead of them, [`endpoint`] answers the AWS Secrets
//! Manager Agent's HTTP API.

pub mod config;
pub mod endpoint;
pub mod files;
pub mod notify;
pub mod objects;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::meta::region::ProvideRegion;

use crate::provider::{ProviderContext, Providers};
use config::{Config, ConfigError};
use notify::Notify;
use writer::AtomicWriter;

/// The agent's settings, from its flags.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: PathBuf,
    pub target_dir: PathBuf,
    pub refresh_interval: Duration,
    /// Mode of files whose object sets no `filePermission`.
    pub default_mode: u32,
    /// Namespace of ExternalSecret manifests that name none.
    pub namespace: String,
    pub notify: Notify,
    /// Deadline and output cap of each ExternalSecret's templates.
    pub template_limits: crate::template::RenderLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("fetching failed, so no file was written: {0}")]
    Fetch(#[from] objects::FetchError),
    #[error("writing into {dir}: {source}")]
    Write { dir: String, source: std::io::Error },
}

/// What one refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The files on disk already were these.
    Unchanged { files: usize },
    /// First write into an empty directory.
    Created { files: usize },
    /// A new generation replaced different files.
    Replaced { files: usize },
}

pub struct Agent {
    settings: Settings,
    base: SdkConfig,
    providers: Providers,
    /// ExternalSecrets' stores, kept across refreshes like `providers`.
    renderer: tokio::sync::Mutex<crate::render::Renderer>,
    writer: AtomicWriter,
}

impl Agent {
    /// Checks the config and loads the AWS base config (the default chain:
    /// IRSA, EKS Pod Identity, environment keys). Makes no AWS call.
    pub async fn new(settings: Settings) -> Result<Self, AgentError> {
        let env_region = aws_config::default_provider::region::default_provider()
            .region()
            .await;
        let config = Config::load(
            &settings.config,
            env_region.as_ref().map(|r| r.as_ref()),
            settings.default_mode,
        )?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if env_region.is_none()
            && let Some(region) = config.objects().map(objects::Objects::region)
        {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        let base = loader.load().await;
        let providers = Providers::new(ProviderContext {
            aws_base: Some(base.clone()),
            ..Default::default()
        });
        let renderer = crate::render::Renderer::new(ProviderContext {
            aws_base: Some(base.clone()),
            ..Default::default()
        });
        Ok(Self {
            writer: AtomicWriter::new(&settings.target_dir),
            settings,
            base,
            providers,
            renderer: tokio::sync::Mutex::new(renderer),
        })
    }

    /// The AWS config the agent's clients use (its credentials and region),
    /// for the endpoint to share.
    pub fn aws_config(&self) -> &SdkConfig {
        &self.base
    }

    /// One refresh: read the config again, fetch everything, write if changed.
    pub async fn refresh(&self) -> Result<Outcome, AgentError> {
        let region = self.base.region().map(|r| r.as_ref().to_string());
        let config = Config::load(
            &self.settings.config,
            region.as_deref(),
            self.settings.default_mode,
        )?;
        let files = config
            .fetch(
                &self.providers,
                &mut *self.renderer.lock().await,
                &self.settings.namespace,
                self.settings.default_mode,
                &self.settings.template_limits,
            )
            .await?;
        let count = files.len();
        let dir = self.settings.target_dir.clone();
        let writer = AtomicWriter::new(self.writer.dir());
        let result = tokio::task::spawn_blocking(move || {
            let had_files = writer.current()?.is_some();
            writer.write(&files).map(|changed| (had_files, changed))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
        match result {
            Ok((_, false)) => Ok(Outcome::Unchanged { files: count }),
            Ok((false, true)) => Ok(Outcome::Created { files: count }),
            Ok((true, true)) => Ok(Outcome::Replaced { files: count }),
            Err(source) => Err(AgentError::Write {
                dir: dir.display().to_string(),
                source,
            }),
        }
    }

    /// Refreshes until `shutdown` completes: every `refresh_interval` (spread
    /// ±10%), sooner after a failure (1 s, 2 s, 4 s, ... up to the interval).
    /// On a change of files already written: the signal and/or the command,
    /// once. Never returns an error: failures are logged and retried.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        loop {
            let wait = match self.refresh().await {
                Ok(outcome) => {
                    failures = 0;
                    self.report(outcome).await;
                    jittered(self.settings.refresh_interval)
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "refresh failed; the current files stay as they are");
                    backoff(failures).min(self.settings.refresh_interval)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => {
                    tracing::info!("stopping");
                    return;
                }
            }
        }
    }

    async fn report(&self, outcome: Outcome) {
        let dir = self.settings.target_dir.display().to_string();
        match outcome {
            Outcome::Unchanged { files } => tracing::info!(files, %dir, "refresh: no change"),
            Outcome::Created { files } => tracing::info!(files, %dir, "refresh: files written"),
            Outcome::Replaced { files } => {
                tracing::info!(files, %dir, "refresh: files changed");
                for problem in self.settings.notify.changed().await {
                    tracing::warn!(%problem, "notifying of the change failed");
                }
            }
        }
    }
}

/// ±10%, as the controller spreads its refreshes.
fn jittered(interval: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    interval.mul_f64(0.9 + (random % 2001) as f64 / 10_000.0)
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let hour = Duration::from_secs(3600);
        let spread: Vec<Duration> = (0..100).map(|_| jittered(hour)).collect();
        assert!(
            spread
                .iter()
                .all(|d| *d >= hour.mul_f64(0.9) && *d <= hour.mul_f64(1.1))
        );
        assert!(spread.iter().any(|d| *d != spread[0]));
    }

    #[test]
    fn backoff_doubles_up_to_a_bound() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(40), Duration::from_secs(256));
    }
}
