//! Delivering alerts: always to the log, and to `[alerts] command` (JSON on stdin) and
//! `[alerts] webhook` (JSON POST). A channel that hangs or fails is logged and given up on
//! after its timeout; it never stops the agent. The schema is in docs/alerts.md.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::AlertSettings;
use crate::hooks;
use crate::report::{Entry, Kind};
use crate::schedule::AlertEvent;

/// Webhook deliveries are tried this many times.
const WEBHOOK_ATTEMPTS: u32 = 3;

/// One alert, as sent to the command and the webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub event: AlertEvent,
    pub name: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub domains: Vec<String>,
    pub state: crate::policy::CertState,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    pub days_left: Option<f64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub renew_at: Option<OffsetDateTime>,
    pub message: String,
    pub host: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

impl Alert {
    /// Builds the alert for `entry`; `failure` is the last renewal error, if any.
    pub fn new(
        event: AlertEvent,
        entry: &Entry,
        failure: Option<&str>,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            event,
            name: entry.name.clone(),
            kind: entry.kind,
            path: entry.path.clone(),
            endpoint: entry.endpoint.clone(),
            domains: entry.domains.clone(),
            state: entry.state,
            not_after: entry.not_after,
            days_left: entry.days_left,
            renew_at: if entry.kind == Kind::Managed {
                entry.renew_at
            } else {
                None
            },
            message: message(event, entry, failure),
            host: hostname(),
            time: now,
        }
    }
}

fn message(event: AlertEvent, entry: &Entry, failure: Option<&str>) -> String {
    let target = entry.target();
    let expiry = match (entry.not_after, entry.days_left) {
        (Some(not_after), Some(days)) if days < 0.0 => {
            format!("EXPIRED on {} ({:.1} days ago)", not_after.date(), -days)
        }
        (Some(not_after), Some(days)) => {
            format!("expires {} (in {days:.1} days)", not_after.date())
        }
        _ => "has no readable certificate".to_owned(),
    };
    // Alerts come from the running agent, which is already renewing or retrying: the advice
    // says so, and points at what explains the rest, rather than "run renew".
    let action = match entry.kind {
        Kind::Managed => {
            "evercert keeps retrying with backoff; `evercert status` shows the last error and the next attempt, and docs/alerts.md maps the error to its fix".to_owned()
        }
        Kind::Monitored => "evercert does not renew it: tell whoever issues it".to_owned(),
    };
    let error_action = match (entry.kind, entry.renew_reason) {
        // A link problem's message carries its own advice (`report::apply_layout`).
        (Kind::Managed, _) if entry.layout.as_ref().is_some_and(|layout| !layout.problems.is_empty()) => None,
        (Kind::Managed, Some(crate::decision::Reason::Unreadable)) => Some(
            "a new certificate could not be written either: give evercert access to the file (docs/alerts.md)".to_owned(),
        ),
        (Kind::Managed, _) => Some(
            "evercert is ordering a replacement now; a `recovered` alert follows once it is in place (if none does, `evercert status` says why)".to_owned(),
        ),
        (Kind::Monitored, _) => Some(action.clone()),
    };
    let why = failure
        .map(|failure| format!("; last renewal error: {failure}"))
        .unwrap_or_default();
    match event {
        AlertEvent::Warning | AlertEvent::Critical | AlertEvent::Expired => {
            // A monitored certificate is not evercert's to renew: "not renewed" would blame it.
            let renewed = match entry.kind {
                Kind::Managed => " and has not been renewed",
                Kind::Monitored => "",
            };
            format!(
                "{}: certificate {target} {expiry}{renewed}{why}; {action}",
                entry.name
            )
        }
        AlertEvent::Error => {
            let error = entry
                .error
                .as_deref()
                .unwrap_or("the certificate cannot be read");
            match error_action {
                Some(action) => format!("{}: {error}; {action}", entry.name),
                None => format!("{}: {error}", entry.name),
            }
        }
        AlertEvent::RenewalFailed => format!(
            "{}: renewal failed{why}; the certificate {target} {expiry}; {action}",
            entry.name
        ),
        AlertEvent::VerifyFailed => format!(
            "{}: after the reload the server did not serve the new certificate, so the previous one was restored{why}; check the reload command and the web server's certificate paths",
            entry.name
        ),
        AlertEvent::Recovered => format!(
            "{}: recovered; the certificate {target} {expiry}",
            entry.name
        ),
        AlertEvent::FallbackUsed => format!(
            "{}: renewed from the fallback CA {} because {}; the certificate {target} {expiry}; the next renewal tries the primary CA again: check why it failed (its status page, this host's account there, rate limits)",
            entry.name,
            entry.ca.as_deref().unwrap_or("(unknown)"),
            failure.unwrap_or("the primary CA kept failing")
        ),
        AlertEvent::AccountRegistered => format!(
            "{}: {}; the certificate {target} {expiry}; `evercert account show` shows the account in use: if nobody deactivated the old one on purpose, ask the CA why it no longer knows it (a database reset?), and update any CAA accounturi record that names the old account",
            entry.name,
            failure.unwrap_or(
                "the CA no longer knew evercert's account, so a new one was registered and is used from now on"
            )
        ),
        AlertEvent::Discovered => format!(
            "a certificate the web server serves is now monitored: {} ({target}); it {expiry}; evercert does not renew it: `evercert discover` shows the configuration line that serves it, and proposes a [[certificate]] to have evercert renew it",
            entry.name
        ),
    }
}

/// This machine's host name, as alerts and the status page name it.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Writes the alert to the log: the one channel that never hangs, so it is written the
/// moment the alert is decided, whatever happens to its delivery.
pub fn log(alert: &Alert) {
    match alert.event {
        AlertEvent::Recovered => tracing::info!(event = "recovered", "{}", alert.message),
        AlertEvent::Warning => tracing::warn!(event = "warning", "{}", alert.message),
        AlertEvent::Discovered => tracing::warn!(event = "discovered", "{}", alert.message),
        AlertEvent::FallbackUsed => {
            tracing::warn!(event = "fallback_used", "{}", alert.message);
        }
        AlertEvent::AccountRegistered => {
            tracing::warn!(event = "account_registered", "{}", alert.message);
        }
        _ => tracing::error!(event = ?alert.event, "{}", alert.message),
    }
}

/// Sends alerts through the configured channels.
pub struct Alerter {
    settings: AlertSettings,
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter")
            .field("command", &self.settings.command)
            .field("webhook", &self.settings.webhook.as_deref().map(redact_url))
            .field("timeout", &self.settings.timeout)
            .finish()
    }
}

impl Alerter {
    pub fn new(settings: AlertSettings) -> Self {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|builder| {
                builder
                    .with_root_certificates(crate::probe::system_roots(&[]))
                    .with_no_client_auth()
            })
            .unwrap_or_else(|_| {
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Self {
            settings,
            http: HyperClient::builder(TokioExecutor::new()).build(https),
        }
    }

    /// Logs the alert and delivers it to every configured channel.
    pub async fn send(&self, alert: &Alert) {
        log(alert);
        self.deliver(alert).await;
    }

    /// How long one delivery may take at most: the command's timeout, then every webhook
    /// attempt's and the pauses between them, and a little slack.
    pub fn delivery_deadline(&self) -> Duration {
        let timeout = self
            .settings
            .timeout
            .unsigned_abs()
            .max(Duration::from_secs(1));
        let pauses: u64 = (1..u64::from(WEBHOOK_ATTEMPTS)).sum();
        timeout * (1 + WEBHOOK_ATTEMPTS) + Duration::from_secs(pauses + 5)
    }

    /// Delivers the alert to the command and the webhook (not the log: see [`log`]).
    pub async fn deliver(&self, alert: &Alert) {
        let Ok(json) = serde_json::to_vec(alert) else {
            return;
        };
        self.deliver_json(&alert.name, &json).await;
    }

    /// Delivers an alert already in JSON (fleet mode's own events, `crate::fleet`) to the
    /// command and the webhook; `name` is the certificate, for error messages.
    pub async fn deliver_json(&self, name: &str, json: &[u8]) {
        let timeout = self
            .settings
            .timeout
            .unsigned_abs()
            .max(Duration::from_secs(1));
        if let Some(command) = &self.settings.command
            && let Err(err) = hooks::run_with_input(command, &[], &[], Some(json), timeout).await
        {
            tracing::error!("alert command failed for {name}: {err}");
        }
        if let Some(webhook) = &self.settings.webhook {
            self.post(webhook, json, timeout, name).await;
        }
    }

    async fn post(&self, url: &str, json: &[u8], timeout: Duration, name: &str) {
        let shown = redact_url(url);
        let (target, authorization) = match split_credentials(url) {
            Ok(split) => split,
            Err(err) => {
                tracing::error!("[alerts] webhook {shown} is not a valid URL: {err}");
                return;
            }
        };
        let mut last = String::new();
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            let mut request = http::Request::post(target.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(
                    http::header::USER_AGENT,
                    concat!("evercert/", env!("CARGO_PKG_VERSION")),
                );
            if let Some(authorization) = &authorization {
                request = request.header(http::header::AUTHORIZATION, authorization.as_str());
            }
            let request = match request.body(Full::new(Bytes::copy_from_slice(json))) {
                Ok(request) => request,
                Err(err) => {
                    tracing::error!("[alerts] webhook {shown} is not a valid URL: {err}");
                    return;
                }
            };
            // The status is the answer: the body is dropped unread, so a receiver that
            // stalls or floods it cannot hold the delivery past its timeout.
            match tokio::time::timeout(timeout, self.http.request(request)).await {
                Ok(Ok(response)) if response.status().is_success() => return,
                Ok(Ok(response)) => last = format!("answered {}", response.status()),
                Ok(Err(err)) => last = err.to_string(),
                Err(_) => last = format!("no answer within {} s", timeout.as_secs()),
            }
            if attempt < WEBHOOK_ATTEMPTS {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
        }
        tracing::error!(
            "alert webhook at {shown} failed for {name} after {WEBHOOK_ATTEMPTS} attempts: {last}"
        );
    }
}

/// A webhook URL as it may appear in a log: scheme, host and port only. Credentials
/// (`user:password@`), a token in the path (Slack-style) or in the query never show.
pub fn redact_url(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.host()) {
            (Some(scheme), Some(host)) => match uri.port_u16() {
                Some(port) => format!("{scheme}://{host}:{port}/…"),
                None => format!("{scheme}://{host}/…"),
            },
            _ => "(a URL without scheme or host)".to_owned(),
        },
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}

/// The URL without `user:password@`, and those credentials as an `Authorization: Basic`
/// value (what a browser or curl sends for them).
fn split_credentials(url: &str) -> Result<(http::Uri, Option<String>), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|err: http::uri::InvalidUri| err.to_string())?;
    let Some((userinfo, host)) = uri
        .authority()
        .and_then(|authority| authority.as_str().rsplit_once('@'))
    else {
        return Ok((uri, None));
    };
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(userinfo);
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(
        host.parse()
            .map_err(|err: http::uri::InvalidUri| err.to_string())?,
    );
    let uri = http::Uri::from_parts(parts).map_err(|err| err.to_string())?;
    Ok((uri, Some(format!("Basic {basic}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_redacted_to_scheme_host_and_port() {
        let url = "https://alice:hunter2@hooks.example.com:8443/services/T0/B0/SECRET?token=abc";
        let shown = redact_url(url);
        assert_eq!(shown, "https://hooks.example.com:8443/…");
        for secret in ["alice", "hunter2", "SECRET", "abc"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(redact_url("http://h/x"), "http://h/…");
        assert!(!redact_url("not a url with a token").contains("token"));
    }

    #[test]
    fn credentials_in_a_webhook_url_become_basic_auth() {
        let (uri, authorization) =
            split_credentials("https://alice:hunter2@hooks.example.com/x?y=1").unwrap();
        assert_eq!(uri.to_string(), "https://hooks.example.com/x?y=1");
        assert_eq!(authorization.as_deref(), Some("Basic YWxpY2U6aHVudGVyMg=="));
        let (uri, authorization) = split_credentials("http://127.0.0.1:9/hook").unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:9/hook");
        assert_eq!(authorization, None);
    }
}
