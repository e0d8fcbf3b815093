//! The bench's own side of "AWS" (moto): creating and changing the remote
//! values, and reading back what moto holds. It signs with the test bed's
//! admin key, so its calls are told apart from the controller's in moto's
//! recording.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};

use super::fleet::{RemoteKey, Service, value_of};
use crate::support::moto;

/// How many of the bench's own requests go to moto at once.
const CONCURRENCY: usize = 8;

pub struct Aws {
    sm: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
}

/// Whether a recorded request was made by the bench (not the controller).
pub fn made_by_bench(recorded: &moto::Recorded) -> bool {
    recorded
        .authorization
        .contains(&format!("Credential={}/", moto::TEST_KEY_ID))
}

impl Aws {
    pub async fn new(endpoint: &str) -> Aws {
        let config = moto::sdk_config(endpoint).await;
        Aws {
            sm: aws_sdk_secretsmanager::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
        }
    }

    /// Creates (version 1) or changes every key to `version`.
    pub async fn write_all(&self, keys: &[RemoteKey], version: u32) -> Result<(), String> {
        futures::stream::iter(keys)
            .map(|key| self.write(key, version))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    async fn write(&self, key: &RemoteKey, version: u32) -> Result<(), String> {
        let value = value_of(key, version);
        let failed = |e: String| format!("writing {} to moto: {e}", key.name);
        match (key.service, version) {
            (Service::SecretsManager, 1) => self
                .sm
                .create_secret()
                .name(&key.name)
                .secret_string(value)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| failed(format!("{e:?}"))),
            (Service::SecretsManager, _) => self
                .sm
                .put_secret_value()
                .secret_id(&key.name)
                .secret_string(value)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| failed(format!("{e:?}"))),
            (Service::ParameterStore, version) => self
                .ssm
                .put_parameter()
                .name(&key.name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .overwrite(version > 1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| failed(format!("{e:?}"))),
        }
    }

    /// What moto holds now for every key (current versions).
    pub async fn read_all(
        &self,
        keys: &[RemoteKey],
    ) -> Result<BTreeMap<RemoteKey, String>, String> {
        let by_name: BTreeMap<(Service, &str), &RemoteKey> = keys
            .iter()
            .map(|k| ((k.service, k.name.as_str()), k))
            .collect();
        let sm: Vec<&RemoteKey> = keys
            .iter()
            .filter(|k| k.service == Service::SecretsManager)
            .collect();
        let ssm: Vec<&RemoteKey> = keys
            .iter()
            .filter(|k| k.service == Service::ParameterStore)
            .collect();
        let mut values = BTreeMap::new();
        for chunk in sm.chunks(20) {
            let response = self
                .sm
                .batch_get_secret_value()
                .set_secret_id_list(Some(chunk.iter().map(|k| k.name.clone()).collect()))
                .send()
                .await
                .map_err(|e| format!("reading Secrets Manager back from moto: {e:?}"))?;
            for entry in response.secret_values() {
                let name = entry.name().unwrap_or_default();
                if let (Some(key), Some(value)) = (
                    by_name.get(&(Service::SecretsManager, name)),
                    entry.secret_string(),
                ) {
                    values.insert((*key).clone(), value.to_string());
                }
            }
        }
        for chunk in ssm.chunks(10) {
            let response = self
                .ssm
                .get_parameters()
                .set_names(Some(chunk.iter().map(|k| k.name.clone()).collect()))
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| format!("reading SSM back from moto: {e:?}"))?;
            for parameter in response.parameters() {
                let name = parameter.name().unwrap_or_default();
                if let (Some(key), Some(value)) = (
                    by_name.get(&(Service::ParameterStore, name)),
                    parameter.value(),
                ) {
                    values.insert((*key).clone(), value.to_string());
                }
            }
        }
        if values.len() != keys.len() {
            return Err(format!(
                "moto holds {} of the {} remote values the bench created",
                values.len(),
                keys.len()
            ));
        }
        Ok(values)
    }
}

/// The values the bench wrote at `version`.
pub fn values_at(keys: &[RemoteKey], version: u32) -> BTreeMap<RemoteKey, String> {
    keys.iter()
        .map(|k| (k.clone(), value_of(k, version)))
        .collect()
}
