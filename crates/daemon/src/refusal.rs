//! [`Refusal`]: an operator's request the daemon turns down, and what to do instead.

/// Answered 4xx by the control API; the CLI exits 2 (bad input).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusalKind {
    /// The request names something that does not exist (404).
    NotFound,
    /// The request is not valid as it stands (400).
    BadInput,
    /// Not the operator's doing: the store or a key failed (500).
    Internal,
}

impl Refusal {
    pub fn bad_input(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: RefusalKind::BadInput,
            message: message.into(),
            hint: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: RefusalKind::NotFound,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Refusal {
        self.hint = Some(hint.into());
        self
    }

    /// An app berth does not know.
    pub fn no_app(app: &str) -> Refusal {
        Refusal::not_found(format!("no app named {app}"))
            .hint("`berth status` lists the deployed apps")
    }
}

impl From<anyhow::Error> for Refusal {
    /// A failure that is not the operator's (the store, a key) still gets an answer; the
    /// control API answers it 500.
    fn from(err: anyhow::Error) -> Refusal {
        Refusal {
            kind: RefusalKind::Internal,
            message: format!("{err:#}"),
            hint: None,
        }
    }
}
