//! [`Failure`]: why a rollout stopped, in words an operator can act on.

use api::Gate;

/// Why a rollout stopped: the gate, what happened (naming app, release, service, instance),
/// what to do, and the last log lines.
#[derive(Debug)]
pub(crate) struct Failure {
    pub gate: Gate,
    pub reason: String,
    pub hint: Option<String>,
    pub tail: Vec<String>,
}

impl Failure {
    pub fn new(gate: Gate, reason: impl Into<String>) -> Failure {
        Failure {
            gate,
            reason: reason.into(),
            hint: None,
            tail: vec![],
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    pub fn tail(mut self, tail: Vec<String>) -> Failure {
        self.tail = tail;
        self
    }
}
