//! A new ACME account when the CA no longer knows ours (the retry policy's `NewAccount`
//! round). On one host the new account is the one in `state_dir` from then on. A fleet shares
//! one account per CA (`fleet/account.rs`), so the account the CA forgot is every host's, and
//! its replacement must become the fleet's too: kept only locally, the next run on every host
//! would install the dead account again and register yet another one. [`SharedAccount`] is
//! that seam; the fleet implements it over etcd.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Failure, Step};
use crate::acme::{AcmeClient, FailureKind};
use crate::config::Config;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an account the CA forgot is replaced for other hosts too, not only in `state_dir`.
pub trait SharedAccount: Send + Sync {
    /// The CA at `directory` no longer knows the account `old` (its credentials are already
    /// moved aside here). Waits for this host's turn to replace it: [`Claim::Adopted`] when
    /// another host already did (its account is now in `state_dir`), [`Claim::Register`] when
    /// this host registers one and then calls [`Self::publish`].
    fn claim<'a>(
        &'a self,
        directory: &'a str,
        old: &'a str,
    ) -> BoxFuture<'a, Result<Claim, String>>;

    /// After [`Claim::Register`]: shares the account now in `state_dir` when `registered`,
    /// and ends this host's turn either way.
    fn publish<'a>(
        &'a self,
        directory: &'a str,
        registered: bool,
    ) -> BoxFuture<'a, Result<Published, String>>;
}

/// Whose turn it is to replace a forgotten account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Another host already registered the replacement, now installed here.
    Adopted {
        account: String,
        /// The host that registered it, when known.
        by: Option<String>,
    },
    /// This host registers the replacement.
    Register,
}

/// What became of the account this host registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// It is the shared account now, at `place` (an etcd key), published by `host` (this
    /// one).
    Shared { place: String, host: String },
    /// Another host replaced the forgotten account first (this host's turn had ended: a lost
    /// lease): theirs stays, and this host's must not be used.
    Lost { account: String },
    /// Nothing was registered: the turn just ended.
    Released,
}

/// The new account of a `NewAccount` round, after the old one (`old`, its credentials
/// `aside`) was moved aside: the connected client, and, when this host registered it, the
/// reason the `account_registered` alert gives (says who uses it from now on).
pub(super) async fn replace(
    config: &Config,
    directory: &str,
    shared: Option<&dyn SharedAccount>,
    old: &str,
    aside: &str,
) -> Result<(Arc<AcmeClient>, Option<String>), Failure> {
    let registered = |new: &str| {
        format!(
            "the CA at {directory} no longer knew the account {old}, so a new account {new} was registered (the old credentials are {aside})"
        )
    };
    let Some(shared) = shared else {
        let client = super::connect(&config.acme, directory, config).await?;
        let reason = format!(
            "{}; evercert uses the new account from now on",
            registered(&client.info.id)
        );
        return Ok((client, Some(reason)));
    };
    let claim = shared.claim(directory, old).await.map_err(|err| {
        Failure::new(
            Step::Account,
            FailureKind::Transient,
            format!(
                "the CA at {directory} no longer knows the fleet's account {old}, and this host cannot take the fleet's turn to replace it: {err}; nothing was registered, the next attempt tries again"
            ),
        )
    })?;
    if let Claim::Adopted { account, by } = claim {
        tracing::info!(
            "the CA at {directory} no longer knows the account {old}; using the account {account} {} registered in its place",
            by.as_deref().unwrap_or("another host")
        );
        let client = super::connect(&config.acme, directory, config).await?;
        return Ok((client, None));
    }
    let connected = super::connect(&config.acme, directory, config).await;
    let published = shared.publish(directory, connected.is_ok()).await;
    let client = connected?;
    let new = client.info.id.clone();
    match published {
        Ok(Published::Shared { place, host }) => {
            let reason = format!(
                "the CA at {directory} no longer knew the fleet's account {old}, so {host} registered a new account {new} (the old credentials are {aside} on {host}) and replaced the fleet's shared account at {place} with it: {host} uses it from now on, every other host from its next run"
            );
            Ok((client, Some(reason)))
        }
        // Never give up the account etcd holds, even if a lost answer made it look replaced.
        Ok(Published::Lost { account }) if account == new => {
            let reason = format!(
                "the CA at {directory} no longer knew the fleet's account {old}, so {new} was registered in its place and is the fleet's shared account now (the old credentials are {aside})"
            );
            Ok((client, Some(reason)))
        }
        Ok(Published::Lost { account }) => {
            // Two live accounts for one fleet would fail each other's authorizations: give
            // ours up and take the fleet's.
            tracing::warn!(
                "another host replaced the fleet's account at {directory} with {account} while this host registered {new}; deactivating {new} and using {account}"
            );
            drop_unused(client, &config.state_dir, directory).await;
            let adopted = shared.claim(directory, &new).await;
            if let Ok(Claim::Register) = adopted {
                let _ = shared.publish(directory, false).await;
            }
            let client = super::connect(&config.acme, directory, config).await?;
            Ok((client, None))
        }
        Ok(Published::Released) => Ok((client, None)),
        Err(err) => {
            let reason = format!(
                "{}, but it could not replace the fleet's shared account ({err}): only the host that registered it uses it until its next run publishes it; the other hosts still hold the old one until then",
                registered(&new)
            );
            Ok((client, Some(reason)))
        }
    }
}

/// Deactivates an account this host registered but must not use, and moves its credentials
/// aside. Best effort: when the CA cannot be asked, the credentials are moved aside anyway.
async fn drop_unused(client: Arc<AcmeClient>, state_dir: &std::path::Path, directory: &str) {
    let id = client.info.id.clone();
    let deactivated = match Arc::try_unwrap(client) {
        Ok(client) => client
            .deactivate(state_dir)
            .await
            .map(drop)
            .map_err(|err| err.message),
        Err(_) => Err("the client is still in use".to_owned()),
    };
    if let Err(err) = deactivated {
        tracing::warn!("cannot deactivate the unused account {id}: {err}; moving it aside");
        if let Err(err) = crate::acme::forget_account(state_dir, directory) {
            tracing::warn!("cannot move the unused account {id} aside: {err}");
        }
    }
}
