//! Fault injection per test: the next N requests matching a method and path
//! fail with a given status, or are answered late.

use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub enum Action {
    Fail(u16),
    Delay(Duration),
    /// Answered 200 with this body as it is (JSON the client may not decode).
    Answer(&'static str),
}

struct Rule {
    method: Option<String>,
    path_contains: String,
    remaining: usize,
    action: Action,
}

#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    /// (group, resource, verb) a SelfSubjectAccessReview answers as denied.
    denied: Mutex<Vec<(String, String, String)>>,
}

impl Faults {
    /// The next `count` requests with `method` (any, if `None`) whose path
    /// contains `path_contains` fail with `status`.
    pub fn fail_next(&self, count: usize, method: Option<&str>, path_contains: &str, status: u16) {
        self.add(count, method, path_contains, Action::Fail(status));
    }

    /// The next `count` matching requests are answered 200 with `body`.
    #[allow(dead_code)] // only the log-leak test garbles answers
    pub fn answer_next(
        &self,
        count: usize,
        method: Option<&str>,
        path_contains: &str,
        body: &'static str,
    ) {
        self.add(count, method, path_contains, Action::Answer(body));
    }

    /// The next `count` matching requests are answered after `delay`.
    pub fn delay_next(
        &self,
        count: usize,
        method: Option<&str>,
        path_contains: &str,
        delay: Duration,
    ) {
        self.add(count, method, path_contains, Action::Delay(delay));
    }

    fn add(&self, count: usize, method: Option<&str>, path_contains: &str, action: Action) {
        self.rules.lock().unwrap().push(Rule {
            method: method.map(str::to_uppercase),
            path_contains: path_contains.into(),
            remaining: count,
            action,
        });
    }

    /// SelfSubjectAccessReviews for `verb` on `group`/`resource` (such as
    /// `secrets` or `externalsecrets/status`) answer `allowed: false`.
    #[allow(dead_code)] // only the doctor's tests deny
    pub fn deny_access(&self, group: &str, resource: &str, verb: &str) {
        self.denied
            .lock()
            .unwrap()
            .push((group.into(), resource.into(), verb.into()));
    }

    pub fn is_denied(&self, group: &str, resource: &str, verb: &str) -> bool {
        self.denied
            .lock()
            .unwrap()
            .iter()
            .any(|(g, r, v)| g == group && r == resource && v == verb)
    }

    /// The fault for this request, if one is due; counts it down.
    pub fn take(&self, method: &str, path: &str) -> Option<Action> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| {
            r.remaining > 0
                && r.method.as_deref().is_none_or(|m| m == method)
                && path.contains(&r.path_contains)
        })?;
        rule.remaining -= 1;
        let action = rule.action;
        rules.retain(|r| r.remaining > 0);
        Some(action)
    }
}
