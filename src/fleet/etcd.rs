//! The one place that talks to etcd.
//!
//! etcd-client 0.21 balances requests over its endpoints but does not fail over: with one
//! member of three down, about a third of its requests fail (`TESTBEDS.md`). So each member
//! gets its own client, every request has a deadline, and a request that fails for a reason
//! another member may not share (connection refused, no leader, the deadline) is sent to the
//! next member; the member that last answered is tried first next time. When every member
//! failed, they are tried again every half second while within two request deadlines (a
//! leader election in progress), then the request fails.
//!
//! Retrying a write whose answer was lost may apply it twice. Every write evercert makes is
//! either idempotent (a put of the same value) or a transaction guarded on revisions, whose
//! second application fails its guard; callers re-read where that matters.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnResponse};
use tokio::sync::Mutex;

use super::config::ClusterSettings;

/// The pause between two passes over the members.
const BETWEEN_PASSES: Duration = Duration::from_millis(500);
/// New passes start while less than this many request deadlines have passed: long enough to
/// ride out a leader election on a loaded machine (measured: "no leader" for over a second
/// after the leader was killed), bounded so that losing quorum is reported within seconds.
const PASS_BUDGET_DEADLINES: u32 = 2;

/// Largest file evercert reads for etcd's TLS and password settings.
const SMALL_FILE_MAX: u64 = crate::fsread::SMALL_FILE_MAX;

/// Why etcd did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// No member answered: down, partitioned, without quorum, or too slow.
    #[error(
        "etcd is unreachable ({what}): {}; check that the members in [cluster] etcd are up and have quorum (etcdctl endpoint health)",
        .attempts.join("; ")
    )]
    Unreachable { what: String, attempts: Vec<String> },
    /// A member answered with an error that another member would repeat.
    #[error("etcd refused {what} at {endpoint}: {message}")]
    Refused {
        what: String,
        endpoint: String,
        message: String,
    },
    /// The settings to reach etcd (TLS files, password file) cannot be used.
    #[error("{0}")]
    Setup(String),
}

impl EtcdError {
    /// Whether etcd could not be reached at all (as opposed to refusing the request).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

struct Member {
    url: String,
    /// Connected on first use, so that a member that is down at start is tried again later.
    client: Mutex<Option<Client>>,
}

/// The fleet's etcd: its members, with a deadline on every request.
pub struct Etcd {
    members: Vec<Member>,
    options: ConnectOptions,
    timeout: Duration,
    /// The member that answered last.
    preferred: AtomicUsize,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self.members.iter().map(|m| m.url.as_str()).collect();
        f.debug_struct("Etcd")
            .field("members", &urls)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    /// Prepares clients for the members of `[cluster]`; nothing is sent yet.
    pub fn new(settings: &ClusterSettings) -> Result<Self, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_timeout(settings.timeout)
            .with_connect_timeout(settings.timeout)
            .with_keep_alive(Duration::from_secs(10), settings.timeout)
            // A member cut off from the others must say so rather than answer from its past.
            .with_require_leader(true);
        if let (Some(user), Some(password_file)) = (&settings.username, &settings.password_file) {
            let password = read_setting(password_file, "password_file")?;
            options = options
                .with_user(user.clone(), password.trim_end().to_owned())
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = &settings.tls {
            let ca = read_setting(&tls.ca, "tls.ca")?;
            let cert = read_setting(&tls.cert, "tls.cert")?;
            let key = read_setting(&tls.key, "tls.key")?;
            options = options.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(ca))
                    .identity(etcd_client::Identity::from_pem(cert, key)),
            );
        }
        Ok(Self {
            members: settings
                .etcd
                .iter()
                .map(|url| Member {
                    url: url.clone(),
                    client: Mutex::new(None),
                })
                .collect(),
            options,
            timeout: settings.timeout,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The deadline of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn client(&self, index: usize) -> Result<Client, String> {
        let member = &self.members[index];
        let mut slot = member.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let connect = Client::connect([member.url.as_str()], Some(self.options.clone()));
        let client = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => return Err(err.to_string()),
            Err(_) => return Err(format!("no connection within {:?}", self.timeout)),
        };
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs `op` against one member after another until one answers; `what` names the
    /// request in errors.
    pub async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let count = self.members.len();
        let first = self.preferred.load(Ordering::Relaxed) % count.max(1);
        if count == 0 {
            return Err(EtcdError::Unreachable {
                what: what.to_owned(),
                attempts: vec!["no etcd endpoints are configured".into()],
            });
        }
        let started = tokio::time::Instant::now();
        let budget = self.timeout * PASS_BUDGET_DEADLINES;
        let mut attempts = Vec::new();
        // Pass after pass while within the budget: a leader election can make every member
        // refuse ("no leader") for a moment. The error lists the last pass.
        for step in 0.. {
            if step > 0 && step % count == 0 {
                if started.elapsed() >= budget {
                    break;
                }
                tokio::time::sleep(BETWEEN_PASSES).await;
                attempts.clear();
            }
            let index = (first + step) % count;
            let url = &self.members[index].url;
            let client = match self.client(index).await {
                Ok(client) => client,
                Err(err) => {
                    attempts.push(format!("{url}: {err}"));
                    continue;
                }
            };
            match tokio::time::timeout(self.timeout, op(client)).await {
                Ok(Ok(value)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(err)) if !worth_another_member(&err) => {
                    return Err(EtcdError::Refused {
                        what: what.to_owned(),
                        endpoint: url.clone(),
                        message: err.to_string(),
                    });
                }
                Ok(Err(err)) => attempts.push(format!("{url}: {err}")),
                Err(_) => attempts.push(format!("{url}: no answer within {:?}", self.timeout)),
            }
        }
        Err(EtcdError::Unreachable {
            what: what.to_owned(),
            attempts,
        })
    }

    /// The value at `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        self.call(&format!("get {key}"), |mut client| async move {
            client.get(key, None).await
        })
        .await
        .map(|mut response| response.take_kvs().into_iter().next())
    }

    /// Every key under `prefix`, with the revision the answer reflects.
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        self.call(&format!("list {prefix}"), |mut client| async move {
            client
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
        })
        .await
        .map(|mut response| {
            let revision = response
                .header()
                .map_or(0, etcd_client::ResponseHeader::revision);
            (response.take_kvs(), revision)
        })
    }

    /// Puts `value` at `key`, bound to `lease` when given.
    pub async fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<(), EtcdError> {
        self.call(&format!("put {key}"), |mut client| async move {
            let options = lease.map(|lease| PutOptions::new().with_lease(lease));
            client.put(key, value, options).await
        })
        .await
        .map(drop)
    }

    /// Runs a transaction; `what` names it in errors.
    pub async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse, EtcdError> {
        self.call(what, |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await
    }

    /// A new lease of `ttl`; its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        self.call("grant a lease", |mut client| async move {
            client.lease_grant(seconds, None).await
        })
        .await
        .map(|response| response.id())
    }

    /// Renews `lease` once; the seconds it has left, 0 when it has already expired.
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        self.call("keep the lease alive", |mut client| async move {
            let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(response) => Ok(response.ttl()),
                None => Ok(0),
            }
        })
        .await
    }

    /// Ends `lease` now, deleting every key bound to it. An expired lease is no error.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        match self
            .call("revoke a lease", |mut client| async move {
                client.lease_revoke(lease).await
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(EtcdError::Refused { message, .. }) if message.contains("not found") => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The client URLs, as configured.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|member| member.url.as_str())
    }
}

/// Whether another member might answer where this one failed.
fn worth_another_member(err: &etcd_client::Error) -> bool {
    use tonic::Code;
    match err {
        etcd_client::Error::GRpcStatus(status) => !matches!(
            status.code(),
            Code::InvalidArgument
                | Code::PermissionDenied
                | Code::Unauthenticated
                | Code::NotFound
                | Code::FailedPrecondition
                | Code::OutOfRange
                | Code::ResourceExhausted
                | Code::AlreadyExists
        ),
        etcd_client::Error::InvalidArgs(_)
        | etcd_client::Error::InvalidUri(_)
        | etcd_client::Error::Utf8Error(_)
        | etcd_client::Error::InvalidMetadataValue(_) => false,
        _ => true,
    }
}

fn read_setting(path: &Path, key: &str) -> Result<String, EtcdError> {
    crate::fsread::read_to_string(path, SMALL_FILE_MAX).map_err(|err| {
        EtcdError::Setup(format!(
            "[cluster] {key}: cannot read {}: {}; fix the path or the file's permissions",
            path.display(),
            err.problem
        ))
    })
}
