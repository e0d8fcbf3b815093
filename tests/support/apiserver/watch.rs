//! Watches: a chunked stream of `{"type": ..., "object": ...}` lines, resumed
//! from a resourceVersion out of a bounded history (older is `410 Gone`), with
//! bookmarks and the initial-events-end marker kube-runtime asks for.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::resources::{ResourceType, status};
use super::selectors::{FieldSelector, LabelSelector};
use super::storage::{Broadcast, Change, State};

pub struct WatchRequest {
    pub resource: ResourceType,
    pub namespace: Option<String>,
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
    /// `None` or `0`: start with the current objects as ADDED events.
    pub resource_version: Option<u64>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    /// Objects reduced to `PartialObjectMetadata`.
    pub metadata_only: bool,
    pub timeout: Duration,
}

/// How often a bookmark is sent when asked for.
const BOOKMARK_EVERY: Duration = Duration::from_millis(500);

impl WatchRequest {
    fn matches(&self, object: &Value) -> bool {
        self.labels.as_ref().is_none_or(|s| s.matches(object))
            && self.fields.as_ref().is_none_or(|s| s.matches(object))
    }

    /// The event a watcher sees for a change, if any: a modification that
    /// moves an object into or out of the selector is an ADDED or DELETED.
    fn event(&self, change: &Change, sent: Option<&Broadcast>) -> Option<Bytes> {
        if change.resource != self.resource.storage_key()
            || self
                .namespace
                .as_deref()
                .is_some_and(|n| n != change.namespace)
        {
            return None;
        }
        let now = self.matches(&change.object);
        let before = change.previous.as_ref().map(|p| self.matches(p));
        let type_ = match (change.type_, before, now) {
            ("MODIFIED", Some(true), true) => "MODIFIED",
            ("MODIFIED", Some(false), true) => "ADDED",
            ("MODIFIED", Some(true), false) => "DELETED",
            ("ADDED", _, true) => "ADDED",
            ("DELETED", _, true) => "DELETED",
            _ => return None,
        };
        Some(self.change_line(type_, change, sent))
    }

    /// One event line for a change, from the encoding every watch shares
    /// while the change is being sent (encoded here the first time a watch
    /// needs it); a change read back from the history is encoded afresh.
    fn change_line(&self, type_: &str, change: &Change, sent: Option<&Broadcast>) -> Bytes {
        let Some(sent) = sent else {
            return self.line_of(type_, &State::present(&self.resource, &change.object));
        };
        let encoded = if self.metadata_only {
            sent.encoded_metadata
                .get_or_init(|| encode(&super::PartialObjectMetadata::of(&change.object)))
        } else {
            let presented = State::present(&self.resource, &change.object);
            if !Arc::ptr_eq(&presented, &change.object) {
                // Served under another version: this watch's own copy.
                return self.line_of(type_, &presented);
            }
            sent.encoded.get_or_init(|| encode(&*change.object))
        };
        let mut text = Vec::with_capacity(encoded.len() + 32);
        text.extend_from_slice(b"{\"type\":\"");
        text.extend_from_slice(type_.as_bytes());
        text.extend_from_slice(b"\",\"object\":");
        text.extend_from_slice(encoded);
        text.extend_from_slice(b"}\n");
        Bytes::from(text)
    }

    /// One event line for an object already as served.
    fn line_of(&self, type_: &str, object: &Value) -> Bytes {
        if self.metadata_only {
            line(&Event {
                type_,
                object: &super::PartialObjectMetadata::of(object),
            })
        } else {
            line(&Event { type_, object })
        }
    }
}

#[derive(serde::Serialize)]
struct Event<'a, T: serde::Serialize> {
    #[serde(rename = "type")]
    type_: &'a str,
    object: &'a T,
}

fn line(value: &impl serde::Serialize) -> Bytes {
    let mut text = serde_json::to_vec(value).expect("events serialize");
    text.push(b'\n');
    Bytes::from(text)
}

fn encode(value: &impl serde::Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("objects serialize"))
}

/// Events are sent in chunks of up to this many bytes: whatever is ready
/// goes in one write (one event per write made the server's and the
/// clients' system calls most of a busy watch's cost).
const CHUNK: usize = 64 * 1024;

/// `lines` joined into chunks of about [`CHUNK`] bytes.
fn chunks(lines: Vec<Bytes>) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    for line in lines {
        if !chunk.is_empty() && chunk.len() + line.len() > CHUNK {
            out.push(Bytes::from(std::mem::take(&mut chunk)));
        }
        chunk.extend_from_slice(&line);
    }
    if !chunk.is_empty() {
        out.push(Bytes::from(chunk));
    }
    out
}

fn bookmark(resource: &ResourceType, resource_version: u64, initial_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": resource_version.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {"apiVersion": resource.api_version(), "kind": resource.kind, "metadata": metadata}})
}

/// Starts a watch; the body streams until the timeout, the client leaves, or
/// the watcher falls too far behind.
pub fn start(state: &Arc<Mutex<State>>, request: WatchRequest) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let mut backlog = Vec::new();
    let (mut changes, start_version) = {
        let mut state = state.lock().unwrap();
        let from = request.resource_version.filter(|rv| *rv > 0);
        match from {
            Some(rv) if rv < state.compacted => {
                let gone = status(
                    410,
                    "Expired",
                    &format!("too old resource version: {rv} ({})", state.compacted),
                    None,
                );
                backlog.push(line(&json!({"type": "ERROR", "object": gone})));
                drop(state);
                let _ = tx.try_send(backlog.remove(0));
                return body_of(rx);
            }
            Some(rv) => {
                for change in state.history_since(rv) {
                    if let Some(event) = request.event(&change, None) {
                        backlog.push(event);
                    }
                }
            }
            None => {
                for object in
                    state.selectable(&request.resource, request.namespace.as_deref(), None)
                {
                    if request.matches(&object) {
                        backlog.push(request.line_of("ADDED", &object));
                    }
                }
                if request.send_initial_events {
                    backlog.push(line(&bookmark(
                        &request.resource,
                        state.resource_version,
                        true,
                    )));
                }
            }
        }
        (state.subscribe(&request.resource), state.resource_version)
    };
    let state = state.clone();
    tokio::spawn(async move {
        for chunk in chunks(backlog) {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(request.timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        let mut last_version = start_version;
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(sent) => {
                        last_version = sent.change.resource_version;
                        let mut chunk = Vec::new();
                        if let Some(event) = request.event(&sent.change, Some(&sent)) {
                            chunk.extend_from_slice(&event);
                        }
                        // And whatever else is ready, in the same write.
                        while chunk.len() < CHUNK {
                            match changes.try_recv() {
                                Ok(sent) => {
                                    last_version = sent.change.resource_version;
                                    if let Some(event) = request.event(&sent.change, Some(&sent)) {
                                        chunk.extend_from_slice(&event);
                                    }
                                }
                                Err(broadcast::error::TryRecvError::Empty) => break,
                                // Too far behind, or the server stopped: the client re-lists.
                                Err(_) => return,
                            }
                        }
                        if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                            return;
                        }
                    }
                    // Too far behind, or the server stopped: the client re-lists.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if request.bookmarks => {
                    let current = state.lock().unwrap().resource_version.max(last_version);
                    if tx.send(line(&bookmark(&request.resource, current, false))).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            }
        }
    });
    body_of(rx)
}

fn body_of(rx: mpsc::Receiver<Bytes>) -> Body {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Body::from_stream(stream)
}
