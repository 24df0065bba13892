//! The http-01 fan-out over etcd: behind a load balancer the CA's request may reach any host,
//! so every host must serve the holder's tokens before the CA is told to validate.
//!
//! The holder publishes each token at `P/http01/TOKEN` bound to its session lease (a holder
//! that dies takes its tokens with it) and guarded by its lock's fencing token. Every other
//! process of the fleet watches that prefix and serves each token the way it answers http-01
//! for that certificate (its webroot or its built-in responder), then acknowledges at
//! `P/ack/TOKEN/HOST` (bound to its own lease). The holder waits until every live host
//! (`P/hosts/`) answered, for at most `ack_timeout`, then asks the CA; afterwards it deletes
//! the tokens and their acknowledgements.
//!
//! A live host that does not answer in time, or answers that it cannot serve (no such
//! certificate there, another challenge type), is named in a warning and the CA is asked
//! anyway: one broken host must not stop the fleet's renewal, and the CA may well ask a host
//! that serves. The renewal's usual failure handling follows if the CA picked that host.
//!
//! Test-only: when `EVERCERT_TEST_FLEET_ACK_DELAY_MS` is set, the holder sleeps that many
//! milliseconds after the acknowledgements and before asking the CA, so tests can kill it
//! there. Never set it in production.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, DeleteOptions, KeyValue, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::Fleet;
use crate::challenge::{self, ChallengeFanout, ChallengeResponse, Presented, Responders};

const ACK_POLL: Duration = Duration::from_millis(50);
/// Longer tokens than this are not what any CA sends (RFC 8555 asks for 128 bits).
const MAX_TOKEN_LEN: usize = 256;
/// A token record is a few hundred bytes; anything larger is not one.
const MAX_RECORD_LEN: usize = 8 * 1024;
/// The watch is renewed this often even when quiet (a member can leave a watch idle).
const RESYNC: Duration = Duration::from_secs(10);
const ACK_DELAY_ENV: &str = "EVERCERT_TEST_FLEET_ACK_DELAY_MS";

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `P/http01/TOKEN` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SharedToken {
    /// The certificate being ordered.
    name: String,
    domain: String,
    key_authorization: String,
    /// The holder: it serves the token itself.
    host: String,
}

/// What `P/ack/TOKEN/HOST` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// Who answered for a set of tokens.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Live hosts serving every token.
    pub serving: Vec<String>,
    /// Live hosts that answered that they cannot serve one, with their reason.
    pub failed: Vec<(String, String)>,
    /// Live hosts that have not answered for every token yet.
    pub missing: Vec<String>,
}

/// Counts the answers of the `live` hosts for `tokens`; `acks` maps (token, host) to the
/// host's answer. Pure: the holder's wait loop polls etcd and asks this.
pub fn tally(
    live: &BTreeSet<String>,
    tokens: &[String],
    acks: &HashMap<(String, String), Ack>,
) -> Tally {
    let mut tally = Tally::default();
    for host in live {
        let answers: Vec<Option<&Ack>> = tokens
            .iter()
            .map(|token| acks.get(&(token.clone(), host.clone())))
            .collect();
        if let Some(error) = answers.iter().flatten().find(|ack| !ack.ok) {
            let why = error
                .error
                .clone()
                .unwrap_or_else(|| "no reason given".into());
            tally.failed.push((host.clone(), why));
        } else if answers.iter().all(Option::is_some) {
            tally.serving.push(host.clone());
        } else {
            tally.missing.push(host.clone());
        }
    }
    tally
}

/// The etcd fan-out of one host.
#[derive(Debug, Clone)]
pub struct FleetFanout {
    fleet: Arc<Fleet>,
}

impl FleetFanout {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self { fleet }
    }

    async fn publish_token(&self, name: &str, response: &ChallengeResponse) -> Result<(), String> {
        let fleet = &self.fleet;
        let key = fleet.key(&["http01", &response.token]);
        let record = SharedToken {
            name: name.to_owned(),
            domain: response.domain.clone(),
            key_authorization: response.key_authorization.clone(),
            host: fleet.name().to_owned(),
        };
        let json = serde_json::to_vec(&record).map_err(|err| err.to_string())?;
        let put = TxnOp::put(
            key.as_str(),
            json,
            Some(PutOptions::new().with_lease(fleet.lease())),
        );
        // Under the renewal lock (not in a dry run, which takes none) the token is only
        // published while the lock is still this host's.
        let txn = match fleet.token(name) {
            Some(token) => Txn::new()
                .when([Compare::create_revision(
                    fleet.key(&["lock", name]),
                    CompareOp::Equal,
                    token,
                )])
                .and_then([put]),
            None => Txn::new().and_then([put]),
        };
        let response = fleet
            .etcd
            .txn(&format!("share the http-01 token at {key}"), txn)
            .await
            .map_err(|err| err.to_string())?;
        if !response.succeeded() {
            return Err(format!(
                "this host no longer holds the fleet's renewal lock of {name} (its lease expired); the host that holds it now renews"
            ));
        }
        Ok(())
    }

    async fn wait_for_acks(&self, name: &str, tokens: &[String]) -> Result<String, String> {
        let fleet = &self.fleet;
        let started = Instant::now();
        let timeout = fleet.settings.ack_timeout;
        let hosts_prefix = fleet.key(&["hosts", ""]);
        let acks_prefix = fleet.key(&["ack", ""]);
        let tally = loop {
            let (hosts, _) = fleet
                .etcd
                .get_prefix(&hosts_prefix)
                .await
                .map_err(|err| err.to_string())?;
            let live: BTreeSet<String> = hosts
                .iter()
                .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&hosts_prefix))
                .filter(|host| *host != fleet.name())
                .map(str::to_owned)
                .collect();
            let (answers, _) = fleet
                .etcd
                .get_prefix(&acks_prefix)
                .await
                .map_err(|err| err.to_string())?;
            let acks: HashMap<(String, String), Ack> = answers
                .iter()
                .filter_map(|kv| {
                    let rest = kv.key_str().ok()?.strip_prefix(&acks_prefix)?;
                    let (token, host) = rest.split_once('/')?;
                    let ack = serde_json::from_slice(kv.value()).ok()?;
                    Some(((token.to_owned(), host.to_owned()), ack))
                })
                .collect();
            let tally = tally(&live, tokens, &acks);
            if tally.missing.is_empty() || started.elapsed() >= timeout {
                break tally;
            }
            tokio::time::sleep(ACK_POLL).await;
        };
        let took = started.elapsed();
        let mut serving = vec![fleet.name().to_owned()];
        serving.extend(tally.serving.iter().cloned());
        let mut summary = format!(
            "http-01 token{} served by {} host{} ({}) after {} ms",
            if tokens.len() == 1 { "" } else { "s" },
            serving.len(),
            if serving.len() == 1 { "" } else { "s" },
            serving.join(", "),
            took.as_millis()
        );
        for (host, why) in &tally.failed {
            tracing::warn!(
                "{name}: fleet host {host} cannot serve the http-01 token: {why}; the CA is asked anyway and validation fails if it asks {host}"
            );
            summary.push_str(&format!("; {host} cannot serve it: {why}"));
        }
        if !tally.missing.is_empty() {
            let missing = tally.missing.join(", ");
            tracing::warn!(
                "{name}: no answer from fleet host(s) {missing} within ack_timeout ({} s); the CA is asked anyway and validation fails if it asks one of them: check that their evercert runs and reaches etcd",
                timeout.as_secs()
            );
            summary.push_str(&format!(
                "; no answer from {missing} within {} s",
                timeout.as_secs()
            ));
        }
        // Test-only: a pause after the fan-out, before the CA is asked, so tests can kill the
        // holder there. Never set it in production.
        if let Some(delay) = std::env::var(ACK_DELAY_ENV)
            .ok()
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        Ok(summary)
    }

    async fn withdraw_token(&self, token: &str) {
        let fleet = &self.fleet;
        let key = fleet.key(&["http01", token]);
        let acks = fleet.key(&["ack", token, ""]);
        let txn = Txn::new().and_then([
            TxnOp::delete(key.as_str(), None),
            TxnOp::delete(acks, Some(DeleteOptions::new().with_prefix())),
        ]);
        if let Err(err) = fleet
            .etcd
            .txn(&format!("withdraw the http-01 token at {key}"), txn)
            .await
        {
            tracing::warn!(
                "cannot withdraw the http-01 token {key} from the fleet: {err}; it goes when this host's lease ends"
            );
        }
    }
}

impl ChallengeFanout for FleetFanout {
    fn publish<'a>(
        &'a self,
        name: &'a str,
        response: &'a ChallengeResponse,
    ) -> BoxFuture<'a, Result<(), String>> {
        let fleet = self.fleet.clone();
        Box::pin(async move {
            // On the fleet's runtime: the etcd client lives there.
            let this = Self {
                fleet: fleet.clone(),
            };
            let (name, response) = (name.to_owned(), response.clone());
            fleet
                .run_on(async move { this.publish_token(&name, &response).await })
                .await
        })
    }

    fn await_acks<'a>(
        &'a self,
        name: &'a str,
        tokens: &'a [String],
    ) -> BoxFuture<'a, Result<String, String>> {
        let fleet = self.fleet.clone();
        Box::pin(async move {
            let this = Self {
                fleet: fleet.clone(),
            };
            let (name, tokens) = (name.to_owned(), tokens.to_vec());
            fleet
                .run_on(async move { this.wait_for_acks(&name, &tokens).await })
                .await
        })
    }

    fn withdraw<'a>(&'a self, token: &'a str) -> BoxFuture<'a, ()> {
        let fleet = self.fleet.clone();
        Box::pin(async move {
            let this = Self {
                fleet: fleet.clone(),
            };
            let token = token.to_owned();
            let _ = fleet
                .run_on(async move {
                    this.withdraw_token(&token).await;
                    Ok(())
                })
                .await;
        })
    }
}

/// Tokens served here for other hosts.
#[derive(Default)]
struct Served {
    responders: Responders,
    /// Token → what was presented (`None`: this host answered that it cannot serve it).
    tokens: HashMap<String, Option<Presented>>,
    /// Answers not yet written to etcd (it was away): token → answer.
    unsent: HashMap<String, Ack>,
    /// Keys that are not token records; not looked at again.
    ignored: HashSet<String>,
}

/// A token record at `key`, if it is one another host published.
fn parse_record(fleet: &Fleet, prefix: &str, kv: &KeyValue) -> Option<(String, SharedToken)> {
    let key = kv.key_str().ok()?;
    let token = key.strip_prefix(prefix)?;
    let valid = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if !valid || kv.value().len() > MAX_RECORD_LEN {
        return None;
    }
    let record: SharedToken = serde_json::from_slice(kv.value()).ok()?;
    (record.host != fleet.name()).then(|| (token.to_owned(), record))
}

impl Served {
    /// Serves what `kvs` (every key under `P/http01/`) holds and nothing else.
    async fn reconcile(&mut self, fleet: &Fleet, prefix: &str, kvs: &[KeyValue]) {
        let mut wanted = HashMap::new();
        for kv in kvs {
            let key = kv.key_str().unwrap_or_default().to_owned();
            if self.ignored.contains(&key) {
                continue;
            }
            match parse_record(fleet, prefix, kv) {
                Some((token, record)) => {
                    wanted.insert(token, record);
                }
                None => {
                    // Ours (the holder serves its own), or not a token record.
                    self.ignored.insert(key);
                }
            }
        }
        self.ignored
            .retain(|key| kvs.iter().any(|kv| kv.key() == key.as_bytes()));
        let gone: Vec<String> = self
            .tokens
            .keys()
            .filter(|token| !wanted.contains_key(*token))
            .cloned()
            .collect();
        for token in gone {
            self.unsent.remove(&token);
            if let Some(Some(presented)) = self.tokens.remove(&token) {
                challenge::cleanup(presented).await;
            }
        }
        if self.tokens.is_empty() {
            // Nothing to serve: let go of the listening port.
            self.responders = Responders::default();
        }
        for (token, record) in wanted {
            if self.tokens.contains_key(&token) {
                continue;
            }
            let served = match fleet.certificate(&record.name) {
                None => Err(format!(
                    "no [[certificate]] named {:?} in this host's configuration",
                    record.name
                )),
                Some(cert) => challenge::serve_shared_token(
                    &cert.challenge,
                    &self.responders,
                    &record.domain,
                    &token,
                    &record.key_authorization,
                )
                .await
                .map_err(|err| err.to_string()),
            };
            let ack = match served {
                Ok(presented) => {
                    tracing::info!(
                        "{}: serving {}'s http-01 token for {}",
                        record.name,
                        record.host,
                        record.domain
                    );
                    self.tokens.insert(token.clone(), Some(presented));
                    Ack {
                        ok: true,
                        error: None,
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        "{}: cannot serve {}'s http-01 token for {}: {error}",
                        record.name,
                        record.host,
                        record.domain
                    );
                    self.tokens.insert(token.clone(), None);
                    Ack {
                        ok: false,
                        error: Some(error),
                    }
                }
            };
            self.unsent.insert(token, ack);
        }
        self.send_acks(fleet).await;
    }

    async fn send_acks(&mut self, fleet: &Fleet) {
        let unsent: Vec<(String, Ack)> = self.unsent.drain().collect();
        for (token, ack) in unsent {
            let key = fleet.key(&["ack", &token, fleet.name()]);
            let json = serde_json::to_vec(&ack).unwrap_or_default();
            if let Err(err) = fleet.etcd.put(&key, &json, Some(fleet.lease())).await {
                tracing::warn!("cannot acknowledge the http-01 token {token}: {err}");
                self.unsent.insert(token, ack);
            }
        }
    }

    async fn clear(&mut self) {
        for (_, presented) in self.tokens.drain() {
            if let Some(presented) = presented {
                challenge::cleanup(presented).await;
            }
        }
    }
}

/// Serves the other hosts' http-01 tokens while the fleet lives: a watch on `P/http01/`,
/// and the whole prefix read again on every change and every [`RESYNC`] (tokens are few).
pub async fn serve(fleet: Weak<Fleet>) {
    let mut served = Served::default();
    loop {
        let Some(strong) = fleet.upgrade() else {
            served.clear().await;
            return;
        };
        let prefix = strong.key(&["http01", ""]);
        let etcd = strong.etcd.clone();
        drop(strong);
        // Watch first, then read: nothing published in between is missed.
        let watched = etcd
            .call("watch the fleet's http-01 tokens", |mut client| {
                let prefix = prefix.clone();
                async move {
                    client
                        .watch(prefix, Some(etcd_client::WatchOptions::new().with_prefix()))
                        .await
                }
            })
            .await;
        let mut stream = match watched {
            Ok(stream) => Some(stream),
            Err(err) => {
                tracing::debug!("fleet: {err}");
                None
            }
        };
        loop {
            let Some(strong) = fleet.upgrade() else {
                served.clear().await;
                return;
            };
            match etcd.get_prefix(&prefix).await {
                Ok((kvs, _)) => served.reconcile(&strong, &prefix, &kvs).await,
                Err(err) => tracing::debug!("fleet: {err}"),
            }
            drop(strong);
            let Some(watch) = stream.as_mut() else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            };
            match tokio::time::timeout(RESYNC, watch.message()).await {
                // A change, or quiet for a while: read again.
                Ok(Ok(Some(_))) | Err(_) => {}
                // The member went away: watch through another one.
                Ok(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn ack(ok: bool) -> Ack {
        Ack {
            ok,
            error: (!ok).then(|| "webroot not writable".into()),
        }
    }

    #[test]
    fn a_host_serves_only_when_it_answered_for_every_token() {
        let tokens = vec!["t1".to_owned(), "t2".to_owned()];
        let mut acks = HashMap::new();
        acks.insert(("t1".into(), "web-2".into()), ack(true));
        acks.insert(("t2".into(), "web-2".into()), ack(true));
        acks.insert(("t1".into(), "web-3".into()), ack(true));
        acks.insert(("t1".into(), "web-4".into()), ack(true));
        acks.insert(("t2".into(), "web-4".into()), ack(false));
        // An answer from a host that is no longer alive does not count.
        acks.insert(("t1".into(), "gone".into()), ack(true));
        let tally = tally(
            &hosts(&["web-2", "web-3", "web-4", "web-5"]),
            &tokens,
            &acks,
        );
        assert_eq!(tally.serving, vec!["web-2"]);
        assert_eq!(
            tally.failed,
            vec![("web-4".to_owned(), "webroot not writable".to_owned())]
        );
        assert_eq!(tally.missing, vec!["web-3", "web-5"]);
    }

    #[test]
    fn alone_in_the_fleet_nothing_is_missing() {
        let tally = tally(&BTreeSet::new(), &["t".to_owned()], &HashMap::new());
        assert_eq!(tally, Tally::default());
    }
}
