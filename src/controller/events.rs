//! Events (events.k8s.io/v1) through kube-runtime's `Recorder`, which turns a
//! repeat into a series on the first event. Its memory of recent events grows
//! with every object it reports on; here it starts afresh every
//! [`FORGET_AFTER`] events, so memory stays bounded in a large fleet (a repeat
//! just after that starts a new event instead of counting on the old one).

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Events published before the recorder's memory is dropped.
pub const FORGET_AFTER: usize = 256;

pub struct Events {
    client: kube::Client,
    reporter: Reporter,
    current: Mutex<(Arc<Recorder>, usize)>,
}

impl Events {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        let recorder = Arc::new(Recorder::new(client.clone(), reporter.clone()));
        Self {
            client,
            reporter,
            current: Mutex::new((recorder, 0)),
        }
    }

    /// Publishes an event about `regarding`; failing to publish is only logged.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        action: &str,
        reason: &str,
        note: &str,
    ) {
        let recorder = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if current.1 >= FORGET_AFTER {
                *current = (
                    Arc::new(Recorder::new(self.client.clone(), self.reporter.clone())),
                    0,
                );
            }
            current.1 += 1;
            current.0.clone()
        };
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, regarding).await {
            tracing::debug!(error = %e, "could not publish an event");
        }
    }
}
