//! Prometheus metrics on `[metrics] listen`: `/metrics` in the text format, `/healthz`, and
//! the status page `/status` (see `status_page`).
//!
//! The agent replaces the per-certificate snapshot after every scan and bumps the counters
//! after every renewal; a scrape only formats what is there, so it costs microseconds and
//! never touches a certificate file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::listener;
use crate::policy::CertState;
use crate::report::{Entry, Kind};

/// Every state, so that each certificate exports all of them (one at 1, the rest at 0) and
/// alert rules can use `== 1` without `absent()` gymnastics.
const STATES: [CertState; 6] = [
    CertState::Ok,
    CertState::Due,
    CertState::Warning,
    CertState::Critical,
    CertState::Expired,
    CertState::Error,
];

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<Entry>,
    renewals: BTreeMap<(String, &'static str), u64>,
    last_success: BTreeMap<String, i64>,
    verify_ok: BTreeMap<String, bool>,
    ari: BTreeMap<String, (i64, i64)>,
    last_scan: Option<i64>,
    /// For the `/status` page: the thresholds in force and managed certificates' last errors.
    thresholds: crate::policy::Thresholds,
    last_errors: BTreeMap<String, String>,
}

/// The agent's metrics, shared with the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the per-certificate facts after a scan.
    pub fn record_scan(&self, entries: Vec<Entry>, now: OffsetDateTime) {
        let mut inner = self.lock();
        // Counters exist from the start at 0, so that `increase()` sees the first failure.
        for entry in entries.iter().filter(|entry| entry.kind == Kind::Managed) {
            for result in ["success", "failure"] {
                inner
                    .renewals
                    .entry((entry.name.clone(), result))
                    .or_default();
            }
        }
        inner.entries = entries;
        inner.last_scan = Some(now.unix_timestamp());
    }

    /// Counts one renewal attempt's result.
    pub fn record_renewal(
        &self,
        name: &str,
        success: bool,
        verify_failed: bool,
        now: OffsetDateTime,
    ) {
        let mut inner = self.lock();
        let result = if success { "success" } else { "failure" };
        *inner.renewals.entry((name.to_owned(), result)).or_default() += 1;
        if success {
            inner
                .last_success
                .insert(name.to_owned(), now.unix_timestamp());
            inner.verify_ok.insert(name.to_owned(), true);
        } else if verify_failed {
            inner.verify_ok.insert(name.to_owned(), false);
        }
    }

    /// What the `/status` page shows beside the entries: the thresholds in force and the
    /// last renewal error of each managed certificate.
    pub fn record_status(
        &self,
        thresholds: crate::policy::Thresholds,
        last_errors: BTreeMap<String, String>,
    ) {
        let mut inner = self.lock();
        inner.thresholds = thresholds;
        inner.last_errors = last_errors;
    }

    /// The `/status` page as of `now`, from the last scan.
    pub fn status_page(&self, now: OffsetDateTime) -> String {
        let inner = self.lock();
        let host = crate::alerts::hostname();
        crate::status_page::render(&crate::status_page::Page {
            host: &host,
            source: "the running agent",
            entries: &inner.entries,
            last_errors: &inner.last_errors,
            thresholds: inner.thresholds,
            now,
        })
    }

    /// The CA's suggested renewal window, when ARI gave one.
    pub fn record_ari(&self, name: &str, start: OffsetDateTime, end: OffsetDateTime) {
        self.lock().ari.insert(
            name.to_owned(),
            (start.unix_timestamp(), end.unix_timestamp()),
        );
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(256 + inner.entries.len() * 512);
        let family = |name: &str, kind: &str, help: &str, out: &mut String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let labels = |entry: &Entry| {
            format!(
                "name=\"{}\",path=\"{}\"",
                escape(&entry.name),
                escape(entry.target())
            )
        };
        family(
            "evercert_certificate_not_after_seconds",
            "gauge",
            "Expiry of the certificate (Unix time).",
            &mut out,
        );
        for entry in &inner.entries {
            if let Some(at) = entry.not_after {
                let _ = writeln!(
                    out,
                    "evercert_certificate_not_after_seconds{{{}}} {}",
                    labels(entry),
                    at.unix_timestamp()
                );
            }
        }
        family(
            "evercert_certificate_not_before_seconds",
            "gauge",
            "Start of the certificate's validity (Unix time).",
            &mut out,
        );
        for entry in &inner.entries {
            if let Some(at) = entry.not_before {
                let _ = writeln!(
                    out,
                    "evercert_certificate_not_before_seconds{{{}}} {}",
                    labels(entry),
                    at.unix_timestamp()
                );
            }
        }
        family(
            "evercert_certificate_renew_at_seconds",
            "gauge",
            "When evercert renews the certificate (Unix time).",
            &mut out,
        );
        for entry in inner
            .entries
            .iter()
            .filter(|entry| entry.kind == Kind::Managed)
        {
            if let Some(at) = entry.renew_at {
                let _ = writeln!(
                    out,
                    "evercert_certificate_renew_at_seconds{{{}}} {}",
                    labels(entry),
                    at.unix_timestamp()
                );
            }
        }
        family(
            "evercert_certificate_state",
            "gauge",
            "1 for the certificate's current state (ok, due, warning, critical, expired, error).",
            &mut out,
        );
        for entry in &inner.entries {
            for state in STATES {
                let _ = writeln!(
                    out,
                    "evercert_certificate_state{{{},state=\"{state}\"}} {}",
                    labels(entry),
                    u8::from(entry.state == state)
                );
            }
        }
        family(
            "evercert_renewals_total",
            "counter",
            "Renewal attempts since the agent started, by result.",
            &mut out,
        );
        for ((name, result), count) in &inner.renewals {
            let _ = writeln!(
                out,
                "evercert_renewals_total{{name=\"{}\",result=\"{result}\"}} {count}",
                escape(name)
            );
        }
        family(
            "evercert_last_renewal_success_timestamp_seconds",
            "gauge",
            "Last successful renewal (Unix time).",
            &mut out,
        );
        for (name, at) in &inner.last_success {
            let _ = writeln!(
                out,
                "evercert_last_renewal_success_timestamp_seconds{{name=\"{}\"}} {at}",
                escape(name)
            );
        }
        family(
            "evercert_verify_ok",
            "gauge",
            "1 when the last renewal's verification passed, 0 when it failed.",
            &mut out,
        );
        for (name, ok) in &inner.verify_ok {
            let _ = writeln!(
                out,
                "evercert_verify_ok{{name=\"{}\"}} {}",
                escape(name),
                u8::from(*ok)
            );
        }
        family(
            "evercert_ari_window_start_seconds",
            "gauge",
            "Start of the CA's suggested renewal window (ARI).",
            &mut out,
        );
        for (name, (start, _)) in &inner.ari {
            let _ = writeln!(
                out,
                "evercert_ari_window_start_seconds{{name=\"{}\"}} {start}",
                escape(name)
            );
        }
        family(
            "evercert_ari_window_end_seconds",
            "gauge",
            "End of the CA's suggested renewal window (ARI).",
            &mut out,
        );
        for (name, (_, end)) in &inner.ari {
            let _ = writeln!(
                out,
                "evercert_ari_window_end_seconds{{name=\"{}\"}} {end}",
                escape(name)
            );
        }
        family(
            "evercert_last_scan_timestamp_seconds",
            "gauge",
            "When the agent last inspected every certificate (Unix time).",
            &mut out,
        );
        if let Some(at) = inner.last_scan {
            let _ = writeln!(out, "evercert_last_scan_timestamp_seconds {at}");
        }
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// How many scrapers may be connected at once; a Prometheus pair needs two. Over this, the
/// oldest connection still waiting for its request is closed (see [`crate::listener`]).
pub const MAX_CONNECTIONS: usize = 64;

/// Binds `listen` and serves `/metrics`, `/status` and `/healthz` until the handle is aborted (which
/// also closes every open connection).
pub async fn serve(listen: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<JoinHandle<()>> {
    let socket = TcpListener::bind(listen).await?;
    Ok(tokio::spawn(listener::serve(
        socket,
        "metrics",
        MAX_CONNECTIONS,
        move |stream, slot| {
            let metrics = metrics.clone();
            async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    slot.busy();
                    let (status, content_type, body) = match request.uri().path() {
                        "/metrics" => (
                            StatusCode::OK,
                            "text/plain; version=0.0.4",
                            metrics.render(),
                        ),
                        "/status" => (
                            StatusCode::OK,
                            "text/html; charset=utf-8",
                            metrics.status_page(
                                OffsetDateTime::now_utc()
                                    .replace_nanosecond(0)
                                    .unwrap_or_else(|_| OffsetDateTime::now_utc()),
                            ),
                        ),
                        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
                        _ => (
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            "try /metrics, /status or /healthz\n".to_owned(),
                        ),
                    };
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = status;
                        let headers = response.headers_mut();
                        if let Ok(value) = http::HeaderValue::from_str(content_type) {
                            headers.insert(http::header::CONTENT_TYPE, value);
                        }
                        // The status page needs nothing from anywhere: say so to the browser.
                        headers.insert(
                            http::header::CONTENT_SECURITY_POLICY,
                            http::HeaderValue::from_static(
                                crate::status_page::CONTENT_SECURITY_POLICY,
                            ),
                        );
                        headers.insert(
                            http::header::X_CONTENT_TYPE_OPTIONS,
                            http::HeaderValue::from_static("nosniff"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = listener::http1_builder()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::managed_entry;

    #[test]
    fn renders_the_documented_families() {
        let metrics = Metrics::default();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let status = crate::inventory::ManagedStatus {
            name: "shop".into(),
            cert_path: "/etc/tls/shop \"x\".pem".into(),
            domains: vec!["shop.example.com".into()],
            file: None,
            problem: None,
            assessment: crate::policy::assess(
                &crate::policy::OnDisk::Missing,
                crate::policy::RenewBefore::DEFAULT,
                crate::policy::Thresholds::default(),
                now,
            ),
            decision: crate::decision::Decision {
                due: true,
                renew_at: now,
                reason: crate::decision::Reason::NoCertificate,
                ari: crate::decision::AriUse::None,
                next_window: None,
            },
            ari_window: None,
            pending: None,
            issued_by: None,
        };
        metrics.record_scan(vec![managed_entry(&status, now)], now);
        metrics.record_renewal("shop", false, true, now);
        metrics.record_ari("shop", now, now + time::Duration::days(1));
        let text = metrics.render();
        for expected in [
            "evercert_certificate_renew_at_seconds{name=\"shop\",path=\"/etc/tls/shop \\\"x\\\".pem\"} 1800000000",
            "evercert_certificate_state{name=\"shop\",path=\"/etc/tls/shop \\\"x\\\".pem\",state=\"due\"} 1",
            "evercert_certificate_state{name=\"shop\",path=\"/etc/tls/shop \\\"x\\\".pem\",state=\"ok\"} 0",
            "evercert_renewals_total{name=\"shop\",result=\"failure\"} 1",
            "evercert_verify_ok{name=\"shop\"} 0",
            "evercert_ari_window_end_seconds{name=\"shop\"} 1800086400",
            "evercert_last_scan_timestamp_seconds 1800000000",
            "# TYPE evercert_renewals_total counter",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }
}
