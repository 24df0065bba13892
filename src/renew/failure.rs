//! Where and why a renewal failed: the pipeline's steps and its failure type.

use time::OffsetDateTime;

use crate::acme::{AcmeError, FailureKind};

/// The step of the pipeline where a renewal failed. Serde keeps the names state files have
/// always held (`"order"`, `"verify"`, …), so existing histories load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Reading the certificate on disk.
    Inspect,
    /// Taking the renewal lock.
    Lock,
    /// Proving, before ordering, that the new files can be written.
    Preflight,
    /// Loading or registering the ACME account.
    Account,
    /// The ACME order: authorizations, challenges, finalization, download.
    Order,
    /// Checking what the CA sent (chain, key, names, dates).
    Check,
    /// Writing the new version and making it live.
    Store,
    /// The reload hook.
    Reload,
    /// The served certificate after the reload.
    Verify,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inspect => "inspect",
            Self::Lock => "lock",
            Self::Preflight => "preflight",
            Self::Account => "account",
            Self::Order => "order",
            Self::Check => "check",
            Self::Store => "store",
            Self::Reload => "reload",
            Self::Verify => "verify",
        }
    }

    /// Steps that talk to the CA or check its answer: worth trying again within a run.
    pub(super) fn retried_in_a_run(self) -> bool {
        matches!(self, Self::Account | Self::Order | Self::Check)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed renewal: at which step, why, and how soon it is worth trying again.
#[derive(Debug, Clone)]
pub struct Failure {
    pub step: Step,
    pub message: String,
    pub kind: FailureKind,
    pub retry_after: Option<OffsetDateTime>,
    /// The CA no longer knows the account: register anew and retry once.
    pub account_gone: bool,
}

impl Failure {
    pub(super) fn new(step: Step, kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            step,
            message: message.into(),
            kind,
            retry_after: None,
            account_gone: false,
        }
    }

    /// Loading or registering the account failed.
    pub(super) fn from_connect(err: AcmeError) -> Self {
        Self {
            step: Step::Account,
            kind: err.kind,
            retry_after: err.retry_after.map(OffsetDateTime::from),
            account_gone: false,
            message: err.message,
        }
    }

    pub(super) fn from_acme(err: AcmeError) -> Self {
        Self {
            account_gone: err.account_gone(),
            step: Step::Order,
            message: err.message,
            kind: err.kind,
            retry_after: err.retry_after.map(OffsetDateTime::from),
        }
    }
}
