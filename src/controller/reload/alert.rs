//! Reloader's alerting: a webhook called after each restart, naming the
//! workload and the Secrets, ConfigMaps or SecretProviderClasses that changed
//! (names only: never a value, never a hash).
//!
//! Configured as Reloader is, from its environment variables (so a Reloader
//! deployment's settings carry over): `ALERT_ON_RELOAD=true` turns it on,
//! `ALERT_WEBHOOK_URL` is where to post, `ALERT_SINK` the shape (`slack`,
//! `teams`, `gchat`, anything else raw text), `ALERT_ADDITIONAL_INFO` a prefix
//! (`INFO : message`), `ALERT_WEBHOOK_PROXY` a proxy. `--reload-alert-webhook`
//! (and `--reload-alert-sink`) turn it on without them; secretsync adds the
//! sink `json`, a structured body. As in Reloader, a redirect is a failure,
//! and a failed call is logged, never retried. The URL (a Slack or Teams
//! webhook URL is a credential) is never logged.

use std::time::Duration;

use serde_json::{Value, json};

use super::ObjKey;
use super::workload::WorkloadKey;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The shape of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// `{"attachments": [{"color": "good", "author_name": ..., "text": ...}]}`
    Slack,
    /// `{"text": ...}`
    Teams,
    /// `{"text": ...}`
    GoogleChat,
    /// The message as plain text, without Slack's `*` emphasis.
    Raw,
    /// secretsync's own: the message, the workload and the objects as JSON.
    Json,
}

impl Sink {
    /// Reloader's rule: trimmed and lowercased; anything unknown is raw.
    pub fn parse(text: &str) -> Sink {
        match text.trim().to_ascii_lowercase().as_str() {
            "slack" => Sink::Slack,
            "teams" => Sink::Teams,
            "gchat" => Sink::GoogleChat,
            "json" => Sink::Json,
            _ => Sink::Raw,
        }
    }
}

/// Where and how to alert.
#[derive(Clone)]
pub struct Alerts {
    url: String,
    pub sink: Sink,
    additional_info: Option<String>,
    proxy: Option<String>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("url", &"(redacted)")
            .field("sink", &self.sink)
            .finish()
    }
}

impl Alerts {
    /// The flags first, then Reloader's variables (read through `env`).
    /// `None`: no alerts.
    pub fn resolve(
        flag_url: Option<&str>,
        flag_sink: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<Alerts> {
        let url = match flag_url {
            Some(url) => url.trim().to_string(),
            None if env("ALERT_ON_RELOAD").as_deref() == Some("true") => {
                env("ALERT_WEBHOOK_URL")?.trim().to_string()
            }
            None => return None,
        };
        if url.is_empty() {
            return None;
        }
        let sink = flag_sink
            .map(str::to_string)
            .or_else(|| env("ALERT_SINK"))
            .map_or(Sink::Raw, |s| Sink::parse(&s));
        Some(Alerts {
            url,
            sink,
            additional_info: env("ALERT_ADDITIONAL_INFO").map(|i| i.trim().to_string()),
            proxy: env("ALERT_WEBHOOK_PROXY")
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty()),
        })
    }

    /// The message, in Reloader's words (Slack emphasis included).
    pub fn message(&self, workload: &WorkloadKey, objects: &[ObjKey]) -> String {
        let names: Vec<String> = objects
            .iter()
            .map(|o| format!("{} {}", o.kind.as_str(), o.name))
            .collect();
        let changed = if names.is_empty() {
            "its Secrets and ConfigMaps".to_string()
        } else {
            names.join(", ")
        };
        let message = format!(
            "secretsync detected changes in *{changed}* in namespace *{ns}*. Hence restarted *{name}* of type *{kind}* in namespace *{ns}*",
            ns = workload.namespace,
            name = workload.name,
            kind = workload.kind.as_str(),
        );
        match &self.additional_info {
            Some(info) => format!("{info} : {message}"),
            None => message,
        }
    }

    /// The content type and body for this sink.
    pub fn body(&self, workload: &WorkloadKey, objects: &[ObjKey]) -> (&'static str, Vec<u8>) {
        let message = self.message(workload, objects);
        let value = match self.sink {
            Sink::Raw => return ("text/plain", message.replace('*', "").into_bytes()),
            Sink::Slack => json!({"attachments": [{
                "color": "good", "author_name": "secretsync", "text": message}]}),
            Sink::Teams | Sink::GoogleChat => json!({"text": message}),
            Sink::Json => json!({
                "message": message.replace('*', ""),
                "workload": {"kind": workload.kind.as_str(), "namespace": workload.namespace,
                    "name": workload.name},
                "objects": objects.iter().map(|o| json!({"kind": o.kind.as_str(), "name": o.name}))
                    .collect::<Vec<Value>>(),
            }),
        };
        ("application/json", value.to_string().into_bytes())
    }

    /// Posts the alert; failures are logged (without the URL).
    pub async fn send(&self, workload: WorkloadKey, objects: Vec<ObjKey>) {
        let (content_type, body) = self.body(&workload, &objects);
        let url = self.url.clone();
        let proxy = self.proxy.clone();
        let outcome =
            tokio::task::spawn_blocking(move || post(&url, proxy.as_deref(), content_type, body))
                .await
                .unwrap_or_else(|_| Err("the call panicked".into()));
        match outcome {
            Ok(()) => tracing::debug!(workload = %workload, "reload: alert sent"),
            Err(reason) => {
                tracing::warn!(workload = %workload, %reason, "reload: the alert webhook failed")
            }
        }
    }
}

fn post(url: &str, proxy: Option<&str>, content_type: &str, body: Vec<u8>) -> Result<(), String> {
    let proxy = match proxy {
        Some(proxy) => Some(
            ureq::Proxy::new(proxy)
                .map_err(|_| "ALERT_WEBHOOK_PROXY is not a proxy URL".to_string())?,
        ),
        None => None,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(proxy)
        .build()
        .into();
    let response = agent
        .post(url)
        .header("Content-Type", content_type)
        .send(&body[..])
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => "timed out".to_string(),
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                "the webhook URL is not valid".to_string()
            }
            _ => "could not connect".to_string(),
        })?;
    let status = response.status();
    if status.is_redirection() {
        return Err(format!("redirected ({})", status.as_u16()));
    }
    if status.as_u16() >= 400 {
        return Err(format!("answered {}", status.as_u16()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::reload::ObjKind;
    use crate::controller::reload::workload::WorkloadKind;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn workload() -> WorkloadKey {
        WorkloadKey {
            kind: WorkloadKind::Deployment,
            namespace: "team".into(),
            name: "web".into(),
        }
    }

    #[test]
    fn reloaders_variables_turn_it_on_only_with_alert_on_reload_true() {
        let url = ("ALERT_WEBHOOK_URL", " http://127.0.0.1:1/hook ");
        assert!(Alerts::resolve(None, None, env(&[url])).is_none());
        assert!(Alerts::resolve(None, None, env(&[url, ("ALERT_ON_RELOAD", "True")])).is_none());
        let alerts = Alerts::resolve(None, None, env(&[url, ("ALERT_ON_RELOAD", "true")])).unwrap();
        assert_eq!(alerts.url, "http://127.0.0.1:1/hook");
        assert_eq!(alerts.sink, Sink::Raw);
        let flag = Alerts::resolve(Some("http://x/"), Some("Slack "), env(&[])).unwrap();
        assert_eq!(flag.sink, Sink::Slack);
        assert!(
            !format!("{flag:?}").contains("http://x/"),
            "the URL is never printed"
        );
        for (text, sink) in [
            ("slack", Sink::Slack),
            (" TEAMS", Sink::Teams),
            ("gchat", Sink::GoogleChat),
            ("json", Sink::Json),
            ("webhook", Sink::Raw),
            ("", Sink::Raw),
        ] {
            assert_eq!(Sink::parse(text), sink, "{text:?}");
        }
    }

    #[test]
    fn bodies_have_each_sinks_shape_and_name_objects_only() {
        let objects = [
            ObjKey::new("team", ObjKind::Secret, "db"),
            ObjKey::new("team", ObjKind::ConfigMap, "app"),
        ];
        let with = |sink: &str, info: Option<&str>| {
            let mut pairs = vec![
                ("ALERT_ON_RELOAD", "true"),
                ("ALERT_WEBHOOK_URL", "http://h/"),
                ("ALERT_SINK", sink),
            ];
            if let Some(info) = info {
                pairs.push(("ALERT_ADDITIONAL_INFO", info));
            }
            Alerts::resolve(None, None, env(&pairs))
                .unwrap()
                .body(&workload(), &objects)
        };
        let (ct, body) = with("slack", Some("prod-eu"));
        assert_eq!(ct, "application/json");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let text = v["attachments"][0]["text"].as_str().unwrap();
        assert_eq!(
            text,
            "prod-eu : secretsync detected changes in *Secret db, ConfigMap app* in namespace *team*. Hence restarted *web* of type *Deployment* in namespace *team*"
        );
        assert_eq!(v["attachments"][0]["color"], "good");
        for sink in ["teams", "gchat"] {
            let v: Value = serde_json::from_slice(&with(sink, None).1).unwrap();
            assert!(
                v["text"]
                    .as_str()
                    .unwrap()
                    .starts_with("secretsync detected changes in *Secret db")
            );
        }
        let (ct, body) = with("raw", None);
        assert_eq!(ct, "text/plain");
        assert!(!String::from_utf8(body).unwrap().contains('*'));
        let v: Value = serde_json::from_slice(&with("json", None).1).unwrap();
        assert_eq!(
            v["workload"],
            json!({"kind": "Deployment", "namespace": "team", "name": "web"})
        );
        assert_eq!(
            v["objects"],
            json!([{"kind": "Secret", "name": "db"}, {"kind": "ConfigMap", "name": "app"}])
        );
    }
}
