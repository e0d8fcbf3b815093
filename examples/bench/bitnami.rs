//! The `bitnami` phase: Bitnami Sealed Secrets' `bitnami.com/v1alpha1`
//! SealedSecrets served with `--bitnami-compat` (the target: 1,000
//! SealedSecrets of one value, a 4096-bit key, two older keys imported,
//! every Secret written in under 10 s).
//!
//! Before the controller starts (see [`setup_keys`]): three RSA keys of
//! `--bitnami-key-bits` (generated with `openssl genrsa`, or the `rsa` crate
//! where there is no openssl), each in a `kubernetes.io/tls` Secret labelled
//! `sealedsecrets.bitnami.com/sealed-secrets-key=active` in [`KEYS_NAMESPACE`],
//! created a second apart so their creationTimestamps differ, the current
//! (newest) one last; the controller runs with `--bitnami-compat
//! --bitnami-keys-namespace` that namespace.
//!
//! The phase (while the controller serves the fleet beside it):
//! - `first-unseal`: `--bitnami-sealed-secrets` SealedSecrets spread over
//!   `--bitnami-namespaces` new namespaces, one value each, strict scope,
//!   sealed to the current key (the sealing is timed, not measured) are
//!   created; until every target Secret holds its value (checked value by
//!   value) and every SealedSecret's status says Synced=True with
//!   `observedGeneration` equal to its `generation` (the bench lists the
//!   SealedSecrets every 200 ms, and the Secrets too once all are Synced).
//!   The clock starts when the bench starts creating them (as in push-secret).
//! - `resync`: every SealedSecret gets a new label (a watch event, no spec
//!   change): until Bitnami's `sealed_secrets_controller_unseal_requests_total`
//!   has counted a reconcile for each, then until the controller is quiet;
//!   `secretsync_bitnami_unseals_total` must not grow (a value is decrypted
//!   once per change, not per reconcile).
//! - `change`: 10 SealedSecrets get a new value (new ciphertext, so their
//!   generation goes up): until those Secrets hold it and every status is
//!   Synced at its generation; the counter must grow by exactly 10.
//!
//! Then, in the bench process with the controller quiet, one RSA-OAEP
//! decryption alone (`sealed::bitnami::decrypt` over a ring of the right key
//! only; median and mean of many), which sets the first unseal's figures in
//! proportion: the fleet's seconds and the controller's CPU seconds as
//! multiples of one decryption. For the record also one decryption where the
//! ring holds the three keys with the right one tried last (what trying each
//! key costs: a wrong key does the whole RSA operation unless the
//! ciphertext is not below its modulus, which depends on the keys drawn, so
//! between one and three times one decryption). The namespaces are deleted
//! at the end; the key Secrets stay.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;
use serde_json::{Value, json};

use secretsync::api::BitnamiScope;
use secretsync::sealed::bitnami::{self, BitnamiKey, KeyRing};

use super::fleet::FleetSize;
use super::measure;
use super::report::mib;
use super::{Bench, Options, PROGRESS, Start, align_to_second, tracker};

/// Where the sealing keys live (Bitnami's controller keeps them there).
pub const KEYS_NAMESPACE: &str = "kube-system";
/// The key Secrets, oldest first; the last is the current key.
pub const KEY_NAMES: [&str; 3] = [
    "sealed-secrets-key-bench-1",
    "sealed-secrets-key-bench-2",
    "sealed-secrets-key-bench-3",
];
/// How each key's `tls.key` is written (both are Bitnami-readable).
const KEY_FORMATS: [Format; 3] = [Format::Pkcs1, Format::Pkcs8, Format::Pkcs8];
/// The SealedSecrets changed in the `change` stage.
pub const CHANGED: usize = 10;
/// The target for 1,000 SealedSecrets.
pub const TARGET_SECONDS: f64 = 10.0;
/// Each SealedSecret's one key.
const DATA_KEY: &str = "password";
/// The label the `resync` stage sets.
const RESYNC_LABEL: &str = "bench-bitnami-resync";
/// How often the bench lists the SealedSecrets and Secrets while it waits.
const STATUS_POLL: Duration = Duration::from_millis(200);
/// The one-decryption measurement: at least this many, for at least this long.
const DECRYPT_MIN_ITERATIONS: usize = 30;
const DECRYPT_MIN_SECONDS: f64 = 3.0;
const DECRYPT_MAX_ITERATIONS: usize = 2000;

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    Pkcs1,
    Pkcs8,
}

/// One sealing key: its PEM text and where it went.
#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    pub secret: String,
    pub format: &'static str,
    pub bits: usize,
    pub creation_timestamp: String,
    pub generate_seconds: f64,
    /// The key's fingerprint (as Bitnami logs it).
    pub fingerprint: String,
    #[serde(skip)]
    pub pem: String,
}

/// The keys made before the controller starts.
#[derive(Clone)]
pub struct Keys {
    /// Oldest first; the last is the current key.
    pub keys: Vec<KeyInfo>,
    /// `openssl genrsa` or the `rsa` crate.
    pub method: String,
    /// Generating the three (side by side).
    pub generate_seconds: f64,
}

impl Keys {
    fn current(&self) -> &KeyInfo {
        self.keys.last().expect("three keys")
    }
}

/// A `BitnamiKey` from one PEM text.
fn parse(pem: &str, source: &str) -> Result<BitnamiKey, String> {
    let mut keys =
        bitnami::parse_keys(pem.as_bytes(), source).map_err(|e| format!("{source}: {e}"))?;
    if keys.len() != 1 {
        return Err(format!("{source}: {} keys in one PEM text", keys.len()));
    }
    Ok(keys.remove(0))
}

/// One RSA private key as PEM: `openssl genrsa` when there is an openssl
/// (seconds for 4096 bits), else the `rsa` crate.
fn generate(bits: usize, format: Format, openssl: bool) -> Result<(String, f64), String> {
    let started = Instant::now();
    let pem = if openssl {
        let mut command = std::process::Command::new("openssl");
        command.arg("genrsa");
        if matches!(format, Format::Pkcs1) {
            command.arg("-traditional");
        }
        command.arg(bits.to_string());
        let output = command
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("running openssl genrsa: {e}"))?;
        if !output.status.success() {
            return Err(format!("openssl genrsa {bits} failed: {}", output.status));
        }
        String::from_utf8(output.stdout).map_err(|_| "openssl genrsa: not UTF-8".to_string())?
    } else {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
            .map_err(|e| format!("generating an RSA key: {e}"))?;
        match format {
            Format::Pkcs1 => key
                .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                .map_err(|e| e.to_string())?
                .to_string(),
            Format::Pkcs8 => key
                .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|e| e.to_string())?
                .to_string(),
        }
    };
    Ok((pem, started.elapsed().as_secs_f64()))
}

fn openssl_available() -> bool {
    std::process::Command::new("openssl")
        .arg("version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Generates the three keys and creates their Secrets, oldest first, each
/// in a later second than the one before (the controller tries the newest
/// first). Run before the controller starts.
pub async fn setup_keys(client: &kube::Client, options: &Options) -> Result<Keys, String> {
    let bits = options.bitnami_key_bits;
    let openssl = openssl_available();
    let method = if openssl {
        "openssl genrsa (three at once)".to_string()
    } else {
        "the rsa crate (three at once; no openssl here)".to_string()
    };
    let started = Instant::now();
    let generated: Vec<Result<(String, f64), String>> =
        futures::future::join_all(KEY_FORMATS.iter().map(|format| {
            let format = *format;
            async move {
                tokio::task::spawn_blocking(move || generate(bits, format, openssl))
                    .await
                    .map_err(|e| format!("key generation panicked: {e}"))?
            }
        }))
        .await;
    let generate_seconds = started.elapsed().as_secs_f64();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": KEYS_NAMESPACE}}))
            .map_err(|e| e.to_string())?;
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(format!("creating namespace {KEYS_NAMESPACE}: {e}")),
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), KEYS_NAMESPACE);
    let mut keys = Vec::new();
    for (i, result) in generated.into_iter().enumerate() {
        let (pem, seconds) = result?;
        let name = KEY_NAMES[i];
        let key = parse(&pem, name)?;
        // Bitnami's shape (type, label, tls.crt with a certificate for the
        // key), with tls.key exactly as generated (PKCS#1 or PKCS#8).
        let mut secret = bitnami::key_secret(&key, KEYS_NAMESPACE)
            .map_err(|e| format!("the Secret of key {name}: {e}"))?;
        secret.metadata.name = Some(name.to_string());
        secret
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert("tls.key".into(), ByteString(pem.clone().into_bytes()));
        if i > 0 {
            align_to_second().await;
        }
        let created = secrets
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|e| format!("creating key Secret {KEYS_NAMESPACE}/{name}: {e}"))?;
        keys.push(KeyInfo {
            secret: name.to_string(),
            format: match KEY_FORMATS[i] {
                Format::Pkcs1 => "PKCS#1",
                Format::Pkcs8 => "PKCS#8",
            },
            bits: key.bits(),
            creation_timestamp: created
                .metadata
                .creation_timestamp
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            generate_seconds: seconds,
            fingerprint: key.fingerprint(),
            pem,
        });
    }
    Ok(Keys {
        keys,
        method,
        generate_seconds,
    })
}

/// The controller's arguments for the phase.
pub const CONTROLLER_ARGS: [&str; 3] = [
    "--bitnami-compat",
    "--bitnami-keys-namespace",
    KEYS_NAMESPACE,
];

/// One SealedSecret and its Secret.
#[derive(Clone, Debug)]
pub struct Item {
    pub namespace: String,
    pub index: usize,
}

impl Item {
    pub fn name(&self) -> String {
        format!("bitnami-{:05}", self.index)
    }

    /// The value at `version` (1 at the start, 2 once changed).
    pub fn value(&self, version: u32) -> String {
        format!("bitnami-pw-{}-v{version}", self.index)
    }

    /// Base64 of Bitnami's ciphertext of the value, strict scope.
    fn sealed(&self, key: &rsa::RsaPublicKey, version: u32) -> Result<String, String> {
        let label = BitnamiScope::Strict.label(&self.namespace, &self.name());
        let ciphertext = bitnami::encrypt(key, self.value(version).as_bytes(), &label)
            .map_err(|e| format!("sealing {}/{}: {e}", self.namespace, self.name()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(ciphertext))
    }

    /// As kubeseal writes it (strict scope: no scope annotation).
    fn manifest(&self, sealed: &str) -> Value {
        json!({
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": self.name(), "namespace": self.namespace},
            "spec": {
                "encryptedData": {DATA_KEY: sealed},
                "template": {
                    "metadata": {
                        "name": self.name(),
                        "namespace": self.namespace,
                        "creationTimestamp": null,
                    },
                    "type": "Opaque",
                },
            },
        })
    }
}

/// What the phase creates.
pub struct BitnamiPlan {
    pub namespaces: Vec<String>,
    pub items: Vec<Item>,
}

impl BitnamiPlan {
    pub fn new(sealed_secrets: usize, namespaces: usize) -> BitnamiPlan {
        let namespaces: Vec<String> = (0..namespaces.min(sealed_secrets).max(1))
            .map(|n| format!("bench-bitnami-{n:03}"))
            .collect();
        let items = (0..sealed_secrets)
            .map(|index| Item {
                namespace: namespaces[index % namespaces.len()].clone(),
                index,
            })
            .collect();
        BitnamiPlan { namespaces, items }
    }

    /// The `change` stage's items: one in each tenth of all.
    pub fn changed(&self) -> Vec<Item> {
        let count = CHANGED.min(self.items.len());
        if count == 0 {
            return Vec::new();
        }
        let step = self.items.len() / count;
        (0..count)
            .map(|i| self.items[i * step + i % step].clone())
            .collect()
    }
}

fn sealed_secrets_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("bitnami.com", "v1alpha1", "SealedSecret"),
        "sealedsecrets",
    )
}

/// The compat CRD, applied before the controller starts.
pub async fn apply_crd(client: &kube::Client) -> Result<(), String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(measure::BENCH_CLIENT).force();
    for crd in secretsync::api::bitnami_compat_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|e| format!("applying CRD {name}: {e}"))?;
    }
    Ok(())
}

/// The controller's two counters, from its /metrics.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counters {
    /// `secretsync_bitnami_unseals_total`: SealedSecrets fully decrypted.
    pub unseals: u64,
    /// Bitnami's `sealed_secrets_controller_unseal_requests_total`: reconciles.
    pub unseal_requests: u64,
}

impl Counters {
    fn since(self, earlier: Counters) -> Counters {
        Counters {
            unseals: self.unseals.saturating_sub(earlier.unseals),
            unseal_requests: self.unseal_requests.saturating_sub(earlier.unseal_requests),
        }
    }
}

/// Reads the counters from `http://ADDRESS/metrics`.
fn scrape(address: &str) -> Result<Counters, String> {
    let url = format!("http://{address}/metrics");
    let text = ureq::get(&url)
        .call()
        .map_err(|e| format!("{url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    let value = |name: &str| -> Result<u64, String> {
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix(name)?;
                let rest = rest.strip_prefix(' ').or_else(|| {
                    // With labels: `name{...} value`.
                    rest.strip_prefix('{')
                        .and_then(|r| r.split_once("} "))
                        .map(|(_, v)| v)
                })?;
                rest.split_whitespace().next()?.parse::<f64>().ok()
            })
            .map(|v| v as u64)
            .ok_or_else(|| format!("{url} has no {name}"))
    };
    Ok(Counters {
        unseals: value("secretsync_bitnami_unseals_total")?,
        unseal_requests: value("sealed_secrets_controller_unseal_requests_total")?,
    })
}

/// One stage of the phase.
#[derive(Clone, Debug, Serialize)]
pub struct BitnamiStage {
    /// first-unseal, resync, change.
    pub stage: String,
    pub title: String,
    /// From the trigger until the stage's condition held; `None` if not in `--timeout`.
    pub seconds_to_done: Option<f64>,
    /// first-unseal: from the last SealedSecret created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_after_last_created: Option<f64>,
    /// What "done" means in this stage.
    pub done_means: String,
    /// Seconds the bench spent triggering (creating, labelling, updating).
    pub trigger_seconds: f64,
    /// The counters' growth in the stage, and what it must be.
    pub counters: Counters,
    pub unseals_expected: u64,
    pub unseals_as_expected: bool,
    #[serde(flatten)]
    pub cost: super::StageCost,
    pub notes: Vec<String>,
}

/// Timings of one kind of decryption, in seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timing {
    pub iterations: usize,
    pub median: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Timing {
    fn of(mut seconds: Vec<f64>) -> Timing {
        if seconds.is_empty() {
            return Timing::default();
        }
        seconds.sort_by(f64::total_cmp);
        let n = seconds.len();
        let median = if n % 2 == 1 {
            seconds[n / 2]
        } else {
            (seconds[n / 2 - 1] + seconds[n / 2]) / 2.0
        };
        Timing {
            iterations: n,
            median,
            mean: seconds.iter().sum::<f64>() / n as f64,
            min: seconds[0],
            max: seconds[n - 1],
        }
    }
}

/// One kind of decryption timed by the wall clock and by the thread's CPU
/// time (the CPU time holds when other processes share the cores).
#[derive(Clone, Debug, Default, Serialize)]
pub struct DecryptTiming {
    pub wall: Timing,
    pub cpu: Timing,
}

/// One decryption in the bench process, and the first unseal in its units.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DecryptFigures {
    /// A ring of the right key only.
    pub one_key: DecryptTiming,
    /// A ring of the three keys, the right one tried last.
    pub right_key_last_of_three: DecryptTiming,
    /// first-unseal's seconds / one decryption (wall, median).
    pub fleet_seconds_in_decryptions: Option<f64>,
    /// first-unseal's controller CPU seconds / one decryption (CPU, median).
    pub controller_cpu_in_decryptions: Option<f64>,
    /// first-unseal's controller CPU seconds per SealedSecret.
    pub controller_cpu_per_sealed_secret: f64,
    /// The CPUs the controller could use.
    pub cpus: usize,
    /// SealedSecrets x one decryption (CPU, median) / CPUs: the least the
    /// first unseal can take here.
    pub floor_seconds: f64,
    /// While it was measured.
    pub load_average: String,
    pub steal_percent: f64,
}

/// The phase's figures: one JSON line, one table.
#[derive(Clone, Debug, Serialize)]
pub struct BitnamiReport {
    pub phase: String,
    pub commit: String,
    /// The ExternalSecret fleet beside it (the controller serves both).
    pub fleet: FleetSize,
    pub sealed_secrets: usize,
    pub namespaces: usize,
    pub changed: usize,
    pub key_bits: usize,
    pub keys_namespace: String,
    pub keys: Vec<KeyInfo>,
    pub keygen_method: String,
    pub keygen_seconds: f64,
    /// Sealing every value on the bench side (not measured).
    pub sealing_seconds: f64,
    /// Creating the namespaces (not measured).
    pub setup_seconds: f64,
    pub stages: Vec<BitnamiStage>,
    pub decrypt: DecryptFigures,
    pub target_seconds: f64,
    /// first-unseal within the target (only meaningful at 1,000 and 4096 bits).
    pub target_met: Option<bool>,
    /// The highest of the stages' VmHWM.
    pub controller_peak_kib: u64,
    /// At the end: every Secret right and every status Synced at its generation.
    pub verified: bool,
    pub notes: Vec<String>,
}

/// How the SealedSecrets and their Secrets stand, from fresh lists.
#[derive(Default)]
struct Standing {
    /// Secrets holding their expected value.
    secrets_right: usize,
    /// SealedSecrets Synced=True with observedGeneration == generation (and
    /// at least the generation expected of it).
    synced: usize,
    seen: usize,
    /// Whether the Secrets were listed (they are once every SealedSecret
    /// is Synced: the controller writes the status after the Secret).
    secrets_checked: bool,
    /// A few that are not right, and why.
    wrong: Vec<String>,
}

impl Standing {
    fn done(&self, total: usize) -> bool {
        self.secrets_checked
            && self.secrets_right == total
            && self.synced == total
            && self.seen == total
    }

    fn summary(&self, total: usize) -> String {
        let secrets = if self.secrets_checked {
            format!("{}/{total} Secrets right", self.secrets_right)
        } else {
            "Secrets not listed yet".to_string()
        };
        let mut text = format!(
            "{}/{total} SealedSecrets Synced at their generation ({} listed), {secrets}",
            self.synced, self.seen
        );
        if !self.wrong.is_empty() {
            let _ = write!(text, "; first not right: {}", self.wrong.join("; "));
        }
        text
    }
}

/// Lists the phase's SealedSecrets and Secrets: `version_of` gives each
/// item's expected value version (generation at least the same number).
async fn standing(
    client: &kube::Client,
    plan: &BitnamiPlan,
    version_of: &(dyn Fn(&Item) -> u32 + Sync),
    secrets_too: bool,
) -> Result<Standing, String> {
    let lists = futures::future::try_join_all(plan.namespaces.iter().map(|namespace| {
        let sealed: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &sealed_secrets_resource());
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        async move {
            let sealed = tracker::list_all(&sealed, ListParams::default())
                .await
                .map_err(|e| format!("SealedSecrets in {namespace}: {e}"))?;
            let secrets = if secrets_too {
                tracker::list_all(&secrets, ListParams::default())
                    .await
                    .map_err(|e| format!("Secrets in {namespace}: {e}"))?
            } else {
                Vec::new()
            };
            Ok::<_, String>((namespace.clone(), sealed, secrets))
        }
    }))
    .await?;
    let mut sealed_by_id: BTreeMap<(String, String), DynamicObject> = BTreeMap::new();
    let mut secrets_by_id: BTreeMap<(String, String), Secret> = BTreeMap::new();
    for (namespace, sealed, secrets) in lists {
        for object in sealed {
            let name = object.metadata.name.clone().unwrap_or_default();
            sealed_by_id.insert((namespace.clone(), name), object);
        }
        for secret in secrets {
            let name = secret.metadata.name.clone().unwrap_or_default();
            secrets_by_id.insert((namespace.clone(), name), secret);
        }
    }
    let mut standing = Standing {
        seen: sealed_by_id.len(),
        secrets_checked: secrets_too,
        ..Default::default()
    };
    for item in &plan.items {
        let id = (item.namespace.clone(), item.name());
        let version = version_of(item);
        let value = secrets_by_id
            .get(&id)
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(DATA_KEY))
            .map(|v| v.0.clone());
        let secret_right = value.as_deref() == Some(item.value(version).as_bytes());
        if secret_right {
            standing.secrets_right += 1;
        } else if secrets_too && standing.wrong.len() < 3 {
            standing.wrong.push(format!(
                "Secret {}/{} {}",
                item.namespace,
                item.name(),
                match value {
                    None => "missing (or no password)",
                    Some(_) => "holds another value",
                }
            ));
        }
        let Some(object) = sealed_by_id.get(&id) else {
            if standing.wrong.len() < 3 {
                standing.wrong.push(format!(
                    "SealedSecret {}/{} not listed",
                    item.namespace,
                    item.name()
                ));
            }
            continue;
        };
        let generation = object.metadata.generation.unwrap_or(0);
        let status = &object.data["status"];
        let observed = status["observedGeneration"].as_i64();
        let synced = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Synced"));
        let synced_true = synced.is_some_and(|c| c["status"] == "True");
        if synced_true && observed == Some(generation) && generation >= i64::from(version) {
            standing.synced += 1;
        } else if standing.wrong.len() < 3 {
            let message: String = synced
                .and_then(|c| c["message"].as_str())
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            standing.wrong.push(format!(
                "SealedSecret {}/{} generation {generation}, observedGeneration {}, Synced {} {message}",
                item.namespace,
                item.name(),
                observed.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
                synced
                    .and_then(|c| c["status"].as_str())
                    .unwrap_or("absent"),
            ));
        }
    }
    Ok(standing)
}

/// How a stage went, before it is measured.
struct StageOutcome {
    stage: &'static str,
    title: String,
    done_means: String,
    done: Option<Instant>,
    clock: Instant,
    last_created: Option<Instant>,
    trigger_seconds: f64,
    counters: Counters,
    unseals_expected: u64,
    notes: Vec<String>,
}

/// This thread's CPU time so far, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now);
    }
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

/// Times `run` (wall and this thread's CPU) until both minimums are met;
/// `prepare` runs untimed before each.
fn time_each(
    mut prepare: impl FnMut(),
    mut run: impl FnMut() -> Result<(), String>,
) -> Result<DecryptTiming, String> {
    let started = Instant::now();
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    while wall.len() < DECRYPT_MAX_ITERATIONS
        && (wall.len() < DECRYPT_MIN_ITERATIONS
            || started.elapsed().as_secs_f64() < DECRYPT_MIN_SECONDS)
    {
        prepare();
        let at = Instant::now();
        let cpu_at = thread_cpu_seconds();
        run()?;
        cpu.push(thread_cpu_seconds() - cpu_at);
        wall.push(at.elapsed().as_secs_f64());
    }
    Ok(DecryptTiming {
        wall: Timing::of(wall),
        cpu: Timing::of(cpu),
    })
}

/// One decryption in this process: a ring of the right key alone, and of
/// the three keys with the right one tried last.
fn measure_decryption(keys: &Keys) -> Result<(DecryptTiming, DecryptTiming), String> {
    let label = BitnamiScope::Strict.label("bench-bitnami-000", "bitnami-decrypt");
    let plain = b"bitnami-decrypt-value";
    let current = parse(&keys.current().pem, "current")?;
    let ciphertext = bitnami::encrypt(current.public_key(), plain, &label)
        .map_err(|e| format!("sealing: {e}"))?;
    let check = |value: secretsync::SecretValue| -> Result<(), String> {
        if value.expose() == plain {
            Ok(())
        } else {
            Err("the decryption gave another value".into())
        }
    };
    let alone = KeyRing::new(vec![current]);
    let one_key = time_each(
        || {},
        || {
            let value = bitnami::decrypt(&alone, &ciphertext, &label)
                .map_err(|e| format!("decrypting: {e}"))?;
            check(value)
        },
    )?;
    // The ring tries the key that decrypted last first: a value sealed to
    // the first key, decrypted untimed before each run, puts the right key last.
    let all: Vec<BitnamiKey> = keys
        .keys
        .iter()
        .map(|k| parse(&k.pem, &k.secret))
        .collect::<Result<_, _>>()?;
    let oldest = bitnami::encrypt(all[0].public_key(), plain, &label)
        .map_err(|e| format!("sealing: {e}"))?;
    let three = KeyRing::new(all);
    let mut prepared = Ok(());
    let last = time_each(
        || {
            if let Err(e) = bitnami::decrypt(&three, &oldest, &label) {
                prepared = Err(format!("decrypting with the oldest key: {e}"));
            }
        },
        || {
            let value = bitnami::decrypt(&three, &ciphertext, &label)
                .map_err(|e| format!("decrypting with the right key last: {e}"))?;
            check(value)
        },
    )?;
    prepared?;
    Ok((one_key, last))
}

impl Bench {
    fn counters(&self) -> Result<Counters, String> {
        let address = self
            .health
            .clone()
            .ok_or("the controller's address is unknown")?;
        tokio::task::block_in_place(|| scrape(&address))
    }

    /// Polls until `standing` is done, or `deadline`.
    async fn wait_bitnami(
        &mut self,
        plan: &BitnamiPlan,
        version_of: &(dyn Fn(&Item) -> u32 + Sync),
        deadline: Instant,
    ) -> Result<(Option<Instant>, String), String> {
        let total = plan.items.len();
        let mut next_progress = Instant::now() + PROGRESS;
        loop {
            self.check_alive()?;
            // The Secrets are listed once every status says Synced (written
            // after the Secret): half the bench's own load while it waits.
            let mut now = standing(&self.client, plan, version_of, false).await?;
            if now.synced == total && now.seen == total {
                now = standing(&self.client, plan, version_of, true).await?;
            }
            let last = now.summary(total);
            if now.done(total) {
                return Ok((Some(Instant::now()), last));
            }
            if Instant::now() >= deadline {
                return Ok((None, last));
            }
            if Instant::now() >= next_progress {
                if !self.options.json_only {
                    eprintln!(
                        "bench: bitnami: {last}; controller {} API requests so far",
                        measure::controller_work(self.server.stats())
                    );
                }
                next_progress += PROGRESS;
            }
            tokio::time::sleep(STATUS_POLL).await;
        }
    }

    /// The stage's figures as of now.
    fn bitnami_stage(&self, start: Start, outcome: StageOutcome) -> BitnamiStage {
        let mut notes = outcome.notes;
        let as_expected = outcome.counters.unseals == outcome.unseals_expected;
        if !as_expected {
            notes.push(format!(
                "secretsync_bitnami_unseals_total grew by {} (expected {})",
                outcome.counters.unseals, outcome.unseals_expected
            ));
        }
        BitnamiStage {
            stage: outcome.stage.to_string(),
            title: outcome.title,
            seconds_to_done: outcome
                .done
                .map(|d| d.duration_since(outcome.clock).as_secs_f64()),
            seconds_after_last_created: outcome
                .done
                .zip(outcome.last_created)
                .map(|(d, c)| d.saturating_duration_since(c).as_secs_f64()),
            done_means: outcome.done_means,
            trigger_seconds: outcome.trigger_seconds,
            counters: outcome.counters,
            unseals_expected: outcome.unseals_expected,
            unseals_as_expected: as_expected,
            cost: self.stage_cost(&start),
            notes,
        }
    }

    pub(super) async fn bitnami(&mut self) -> Result<(), String> {
        let keys = self
            .bitnami_keys
            .clone()
            .ok_or("bitnami: the keys were not set up before the controller started")?;
        let plan = BitnamiPlan::new(
            self.options.bitnami_sealed_secrets,
            self.options.bitnami_namespaces,
        );
        let total = plan.items.len();
        let concurrency = self.options.concurrency.max(1);
        let client = self.client.clone();
        let resource = sealed_secrets_resource();
        let mut notes = Vec::new();
        let mut stages = Vec::new();

        // The keys as the controller read them.
        let stamps: Vec<&str> = keys
            .keys
            .iter()
            .map(|k| k.creation_timestamp.as_str())
            .collect();
        if stamps.windows(2).any(|w| w[0] >= w[1]) {
            notes.push(format!(
                "the key Secrets' creationTimestamps do not increase ({stamps:?}): the controller may try an older key first"
            ));
        }

        // Sealing, on the bench side (not measured).
        let current = parse(&keys.current().pem, &keys.current().secret)?;
        let public = current.public_key().clone();
        let sealing = Instant::now();
        let sealed: Vec<String> = {
            let items = plan.items.clone();
            let public = public.clone();
            tokio::task::spawn_blocking(move || {
                items
                    .iter()
                    .map(|item| item.sealed(&public, 1))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| format!("sealing panicked: {e}"))??
        };
        let sealing_seconds = sealing.elapsed().as_secs_f64();

        // Setup, not measured: the namespaces.
        let setting_up = Instant::now();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        futures::stream::iter(&plan.namespaces)
            .map(|name| {
                let namespaces = namespaces.clone();
                async move {
                    let namespace: Namespace =
                        serde_json::from_value(json!({"metadata": {"name": name}}))
                            .map_err(|e| e.to_string())?;
                    namespaces
                        .create(&PostParams::default(), &namespace)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("creating namespace {name}: {e}"))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        let setup_seconds = setting_up.elapsed().as_secs_f64();
        self.wait_quiet(Duration::from_secs(15)).await;

        // 1. First unseal: the SealedSecrets are created.
        align_to_second().await;
        let before = self.counters()?;
        let start = self.begin();
        let creating = Instant::now();
        futures::stream::iter(plan.items.iter().zip(&sealed))
            .map(|(item, sealed)| {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &item.namespace, &resource);
                async move {
                    let object: DynamicObject =
                        serde_json::from_value(item.manifest(sealed)).map_err(|e| e.to_string())?;
                    api.create(&PostParams::default(), &object)
                        .await
                        .map(|_| ())
                        .map_err(|e| {
                            format!(
                                "creating SealedSecret {}/{}: {e}",
                                item.namespace,
                                item.name()
                            )
                        })
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        let last_created = Instant::now();
        let trigger_seconds = creating.elapsed().as_secs_f64();
        let deadline = creating + self.options.timeout;
        let (done, last) = self.wait_bitnami(&plan, &|_| 1, deadline).await?;
        self.wait_quiet(Duration::from_secs(15)).await;
        let _ = self.stop_recording();
        let counters = self.counters()?.since(before);
        let mut stage_notes = vec![format!(
            "{total} SealedSecrets created in {trigger_seconds:.2} s; state polled every {} ms",
            STATUS_POLL.as_millis()
        )];
        if done.is_none() {
            stage_notes.push(format!("not done in time; last: {last}"));
        }
        let first = self.bitnami_stage(
            start,
            StageOutcome {
                stage: "first-unseal",
                title: format!(
                    "{total} SealedSecrets created (one value each, strict scope, sealed to the newest of 3 keys)"
                ),
                done_means: "every Secret holds its value and every SealedSecret is Synced=True at its generation".into(),
                done,
                clock: creating,
                last_created: Some(last_created),
                trigger_seconds,
                counters,
                unseals_expected: total as u64,
                notes: stage_notes,
            },
        );
        let first_done = first.seconds_to_done.is_some();
        stages.push(first);

        // 2. Resync: a label on each, no spec change.
        if first_done {
            align_to_second().await;
            let before = self.counters()?;
            let start = self.begin();
            let patch = json!({"metadata": {"labels": {RESYNC_LABEL: "1"}}});
            let labelling = Instant::now();
            futures::stream::iter(&plan.items)
                .map(|item| {
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), &item.namespace, &resource);
                    let patch = &patch;
                    async move {
                        api.patch(&item.name(), &PatchParams::default(), &Patch::Merge(patch))
                            .await
                            .map(|_| ())
                            .map_err(|e| {
                                format!("labelling {}/{}: {e}", item.namespace, item.name())
                            })
                    }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<()>>()
                .await?;
            let trigger_seconds = labelling.elapsed().as_secs_f64();
            // Every SealedSecret reconciled (Bitnami's request counter), then quiet.
            let deadline = labelling + self.options.timeout;
            let mut reconciled = None;
            let mut seen = Counters::default();
            while Instant::now() < deadline {
                self.check_alive()?;
                seen = self.counters()?.since(before);
                if seen.unseal_requests >= total as u64 {
                    reconciled = Some(Instant::now());
                    break;
                }
                tokio::time::sleep(STATUS_POLL).await;
            }
            self.wait_quiet(Duration::from_secs(30)).await;
            let (still, last) = self
                .wait_bitnami(&plan, &|_| 1, Instant::now() + Duration::from_secs(5))
                .await?;
            let _ = self.stop_recording();
            let counters = self.counters()?.since(before);
            let mut stage_notes = vec![format!(
                "{total} SealedSecrets labelled {RESYNC_LABEL} in {trigger_seconds:.2} s"
            )];
            if reconciled.is_none() {
                stage_notes.push(format!(
                    "only {} of {total} reconciles counted (sealed_secrets_controller_unseal_requests_total) in time",
                    seen.unseal_requests
                ));
            }
            if still.is_none() {
                stage_notes.push(format!("after the resync not everything was right: {last}"));
            }
            stages.push(self.bitnami_stage(
                start,
                StageOutcome {
                    stage: "resync",
                    title: "every SealedSecret labelled (a watch event, no spec change)".into(),
                    done_means: "a reconcile counted for each (unseal_requests_total), everything still right".into(),
                    done: reconciled.and(still),
                    clock: labelling,
                    last_created: None,
                    trigger_seconds,
                    counters,
                    unseals_expected: 0,
                    notes: stage_notes,
                },
            ));
        }

        // 3. Change: 10 SealedSecrets get a new value.
        let changed = plan.changed();
        let changed_indexes: Vec<usize> = changed.iter().map(|i| i.index).collect();
        if first_done {
            let resealed: Vec<String> = changed
                .iter()
                .map(|item| item.sealed(&public, 2))
                .collect::<Result<_, _>>()?;
            align_to_second().await;
            let before = self.counters()?;
            let start = self.begin();
            let updating = Instant::now();
            futures::future::try_join_all(changed.iter().zip(&resealed).map(|(item, sealed)| {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &item.namespace, &resource);
                async move {
                    let patch = json!({"spec": {"encryptedData": {DATA_KEY: sealed}}});
                    api.patch(&item.name(), &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                        .map_err(|e| {
                            format!(
                                "updating SealedSecret {}/{}: {e}",
                                item.namespace,
                                item.name()
                            )
                        })
                }
            }))
            .await?;
            let trigger_seconds = updating.elapsed().as_secs_f64();
            let version_of = |item: &Item| {
                if changed_indexes.contains(&item.index) {
                    2
                } else {
                    1
                }
            };
            let deadline = updating + self.options.timeout;
            let (done, last) = self.wait_bitnami(&plan, &version_of, deadline).await?;
            self.wait_quiet(Duration::from_secs(15)).await;
            let _ = self.stop_recording();
            let counters = self.counters()?.since(before);
            let mut stage_notes = vec![format!(
                "{} SealedSecrets resealed with a new value in {trigger_seconds:.2} s: {}",
                changed.len(),
                changed
                    .iter()
                    .map(|i| format!("{}/{}", i.namespace, i.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )];
            if done.is_none() {
                stage_notes.push(format!("not done in time; last: {last}"));
            }
            stages.push(self.bitnami_stage(
                start,
                StageOutcome {
                    stage: "change",
                    title: format!(
                        "{} of the {total} SealedSecrets get a new value (new ciphertext, generation 2)",
                        changed.len()
                    ),
                    done_means: "the changed Secrets hold their new value and every SealedSecret is Synced=True at its generation".into(),
                    done,
                    clock: updating,
                    last_created: None,
                    trigger_seconds,
                    counters,
                    unseals_expected: changed.len() as u64,
                    notes: stage_notes,
                },
            ));
        }

        // At the end, afresh.
        let changed_ran = stages.len() == 3;
        let version_of = |item: &Item| {
            if changed_ran && changed_indexes.contains(&item.index) {
                2
            } else {
                1
            }
        };
        let end = standing(&self.client, &plan, &version_of, true).await?;
        if !end.done(total) {
            notes.push(format!("at the end: {}", end.summary(total)));
        }
        if !first_done {
            notes.push("the first unseal did not finish: the other stages were not run".into());
        }

        // One decryption alone, the controller quiet.
        self.wait_quiet(Duration::from_secs(15)).await;
        let load_average = measure::load_average();
        let ticks = measure::cpu_ticks();
        let (one_key, right_key_last_of_three) =
            tokio::task::block_in_place(|| measure_decryption(&keys))?;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let first = &stages[0];
        let (wall, cpu) = (one_key.wall.median, one_key.cpu.median);
        let decrypt = DecryptFigures {
            fleet_seconds_in_decryptions: first
                .seconds_to_done
                .filter(|_| wall > 0.0)
                .map(|s| s / wall),
            controller_cpu_in_decryptions: (cpu > 0.0)
                .then(|| first.cost.controller_cpu_seconds / cpu),
            controller_cpu_per_sealed_secret: first.cost.controller_cpu_seconds / total as f64,
            cpus,
            floor_seconds: total as f64 * cpu / cpus as f64,
            one_key,
            right_key_last_of_three,
            load_average,
            steal_percent: measure::steal_percent(ticks, measure::cpu_ticks()),
        };
        let verified = end.done(total)
            && stages.len() == 3
            && stages
                .iter()
                .all(|s| s.seconds_to_done.is_some() && s.unseals_as_expected);
        let target_applies = total == 1000 && self.options.bitnami_key_bits == 4096;
        let report = BitnamiReport {
            phase: "bitnami".into(),
            commit: self.commit.clone(),
            fleet: self.fleet.size.clone(),
            sealed_secrets: total,
            namespaces: plan.namespaces.len(),
            changed: changed.len(),
            key_bits: self.options.bitnami_key_bits,
            keys_namespace: KEYS_NAMESPACE.into(),
            keygen_method: keys.method.clone(),
            keygen_seconds: keys.generate_seconds,
            keys: keys.keys.clone(),
            sealing_seconds,
            setup_seconds,
            target_seconds: TARGET_SECONDS,
            target_met: target_applies.then(|| {
                stages[0]
                    .seconds_to_done
                    .is_some_and(|s| s < TARGET_SECONDS)
            }),
            controller_peak_kib: stages
                .iter()
                .map(|s| s.cost.controller.hwm_kib)
                .max()
                .unwrap_or(0),
            stages,
            decrypt,
            verified,
            notes,
        };
        if !self.options.json_only {
            println!("{}", report.table());
        }
        println!("{}", report.json());

        // Back to the fleet alone: the namespaces go (and with them the
        // SealedSecrets and their Secrets); the key Secrets stay.
        for name in &plan.namespaces {
            match namespaces.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(format!("deleting namespace {name}: {e}")),
            }
        }
        self.wait_quiet(Duration::from_secs(15)).await;
        if !verified {
            return Err(
                "bitnami: not every stage finished as expected, or not everything was right at the end (see the notes)"
                    .into(),
            );
        }
        Ok(())
    }
}

impl BitnamiReport {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let f = &self.fleet;
        let _ = writeln!(
            out,
            "== {}: {} Bitnami SealedSecrets in {} namespaces, one value each, strict scope, {}-bit keys (3 imported, newest current) ==\n   beside the fleet: {} ExternalSecrets in {} namespaces, refreshInterval {}s; controller commit {}",
            self.phase,
            self.sealed_secrets,
            self.namespaces,
            self.key_bits,
            f.es,
            f.namespaces,
            f.interval_seconds,
            self.commit,
        );
        let _ = writeln!(
            out,
            "   keys: generated with {} in {:.2} s; Secrets in {} (before the controller started):",
            self.keygen_method, self.keygen_seconds, self.keys_namespace
        );
        for key in &self.keys {
            let _ = writeln!(
                out,
                "     {} {} bits, tls.key {}, created {}, generated in {:.2} s, {}",
                key.secret,
                key.bits,
                key.format,
                key.creation_timestamp,
                key.generate_seconds,
                key.fingerprint
            );
        }
        let _ = writeln!(
            out,
            "   sealing {} values on the bench side: {:.2} s; namespaces set up in {:.2} s (neither measured)",
            self.sealed_secrets, self.sealing_seconds, self.setup_seconds
        );
        for stage in &self.stages {
            let _ = writeln!(out, "   -- {}: {}", stage.stage, stage.title);
            let after_created = stage
                .seconds_after_last_created
                .map(|s| format!(" ({s:.2} s after the last was created)"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "     {} after {}{after_created}; trigger took {:.2} s",
                stage.done_means,
                match stage.seconds_to_done {
                    Some(s) => format!("{s:.2} s"),
                    None => "never (see notes)".into(),
                },
                stage.trigger_seconds
            );
            let _ = writeln!(
                out,
                "     secretsync_bitnami_unseals_total +{} (expected +{}{}), sealed_secrets_controller_unseal_requests_total +{}",
                stage.counters.unseals,
                stage.unseals_expected,
                if stage.unseals_as_expected {
                    ""
                } else {
                    "  <- differs"
                },
                stage.counters.unseal_requests
            );
            super::report::stage_controller_line(&mut out, &stage.cost);
            super::report::stage_api_lines(&mut out, &stage.cost.api);
            let _ = writeln!(
                out,
                "     elsewhere: bench + fake API server CPU {:.2} s (RSS {:.0} MiB), stage {:.1} s, load average {}, CPU taken by the hypervisor {:.0}%",
                stage.cost.bench_cpu_seconds,
                mib(stage.cost.bench_rss_kib),
                stage.cost.stage_seconds,
                stage.cost.load_average,
                stage.cost.steal_percent
            );
            for note in &stage.notes {
                let _ = writeln!(out, "     note: {note}");
            }
        }
        let d = &self.decrypt;
        let ms = |s: f64| s * 1000.0;
        let timing = |t: &DecryptTiming| {
            format!(
                "wall median {:.2} ms, mean {:.2} (min {:.2}, max {:.2}); CPU median {:.2} ms, mean {:.2}; {} runs",
                ms(t.wall.median),
                ms(t.wall.mean),
                ms(t.wall.min),
                ms(t.wall.max),
                ms(t.cpu.median),
                ms(t.cpu.mean),
                t.wall.iterations
            )
        };
        let _ = writeln!(
            out,
            "   one RSA-OAEP decryption in the bench process ({}-bit, sealed::bitnami::decrypt, ring of the right key): {}",
            self.key_bits,
            timing(&d.one_key)
        );
        let _ = writeln!(
            out,
            "   the same, ring of the 3 keys with the right one tried last: {} (a wrong key costs a whole RSA operation unless the ciphertext is not below its modulus: it depends on the keys drawn)",
            timing(&d.right_key_last_of_three)
        );
        let _ = writeln!(
            out,
            "     (measured with the controller quiet; load average {}, CPU taken by the hypervisor {:.0}%)",
            d.load_average, d.steal_percent
        );
        let times = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "   first unseal = {} decryptions of wall time (wall median); controller CPU = {} decryptions (CPU median), {:.2} ms per SealedSecret; floor ({} x one CPU median / {} CPUs) {:.2} s",
            times(d.fleet_seconds_in_decryptions),
            times(d.controller_cpu_in_decryptions),
            ms(d.controller_cpu_per_sealed_secret),
            self.sealed_secrets,
            d.cpus,
            d.floor_seconds
        );
        let _ = writeln!(
            out,
            "   target (1,000 SealedSecrets, 4096-bit, under {:.0} s): {}; controller peak (VmHWM, highest stage) {:.1} MiB; verified at the end: {}",
            self.target_seconds,
            match self.target_met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not this size",
            },
            mib(self.controller_peak_kib),
            if self.verified { "yes" } else { "NO" }
        );
        for note in &self.notes {
            let _ = writeln!(out, "   note: {note}");
        }
        out
    }
}
