//! What went wrong talking to the CA, sorted by what to do next.
//!
//! A failure is classified by three facts together: the operation (what evercert asked for),
//! the HTTP status of the answer, and the ACME problem type in its body — never by the problem
//! type alone. CAs label the same situation differently: step-ca answers a key rollover it does
//! not implement with 501 and `rejectedIdentifier`, and a reset database with 500 and `{}`;
//! advice meant for a refused name must not be given for either. Any 5xx is transient,
//! whatever the body says.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::http::CaAnswered;

/// What kind of failure, for deciding when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Network trouble, timeouts, 5xx, badNonce: try again soon, with backoff.
    Transient,
    /// The CA asked us to slow down; `retry_after` says until when.
    RateLimited,
    /// The CA refused (unauthorized, rejectedIdentifier, caa, dns, …) or the configuration is
    /// wrong: retrying soon will not help and may get the account paused.
    Permanent,
}

/// The ACME request that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Directory,
    NewNonce,
    NewAccount,
    /// POST-as-GET of the account, or `onlyReturnExisting`.
    AccountLookup,
    KeyChange,
    Deactivate,
    NewOrder,
    Authorization,
    Challenge,
    /// Polling the order while the CA validates or issues.
    Order,
    Finalize,
    Certificate,
    Revoke,
    RenewalInfo,
}

impl Operation {
    /// In the operator's words: "the CA refused {this}".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Directory => "the directory request",
            Self::NewNonce => "the nonce request",
            Self::NewAccount => "the account registration",
            Self::AccountLookup => "the account lookup",
            Self::KeyChange => "the account key rollover",
            Self::Deactivate => "the account deactivation",
            Self::NewOrder => "the new order",
            Self::Authorization => "the authorization request",
            Self::Challenge => "the challenge",
            Self::Order => "the order status request",
            Self::Finalize => "the finalization (CSR)",
            Self::Certificate => "the certificate download",
            Self::Revoke => "the revocation",
            Self::RenewalInfo => "the renewal information (ARI) request",
        }
    }

    /// Signed with the account's key id: an answer about the account itself (unknown,
    /// deactivated) is possible here.
    pub fn account_signed(self) -> bool {
        !matches!(
            self,
            Self::Directory | Self::NewNonce | Self::NewAccount | Self::RenewalInfo
        )
    }

    /// About names and their validation, where a refused name or CAA is a possible cause.
    fn about_names(self) -> bool {
        matches!(
            self,
            Self::NewOrder | Self::Authorization | Self::Challenge | Self::Order | Self::Finalize
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// ACME problem types (RFC 8555 §6.7 and RFC 9773) that change what evercert does or says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemType {
    AccountDoesNotExist,
    AlreadyReplaced,
    BadNonce,
    Caa,
    ExternalAccountRequired,
    RateLimited,
    RejectedIdentifier,
    ServerInternal,
    Unauthorized,
    /// Any other type, as the CA wrote it (without the ACME URN prefix).
    Other(String),
}

const ACME_URN: &str = "urn:ietf:params:acme:error:";

impl ProblemType {
    pub fn parse(text: &str) -> Self {
        match text.trim_start_matches(ACME_URN) {
            "accountDoesNotExist" => Self::AccountDoesNotExist,
            "alreadyReplaced" => Self::AlreadyReplaced,
            "badNonce" => Self::BadNonce,
            "caa" => Self::Caa,
            "externalAccountRequired" => Self::ExternalAccountRequired,
            "rateLimited" => Self::RateLimited,
            "rejectedIdentifier" => Self::RejectedIdentifier,
            "serverInternal" => Self::ServerInternal,
            "unauthorized" => Self::Unauthorized,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::AccountDoesNotExist => "accountDoesNotExist",
            Self::AlreadyReplaced => "alreadyReplaced",
            Self::BadNonce => "badNonce",
            Self::Caa => "caa",
            Self::ExternalAccountRequired => "externalAccountRequired",
            Self::RateLimited => "rateLimited",
            Self::RejectedIdentifier => "rejectedIdentifier",
            Self::ServerInternal => "serverInternal",
            Self::Unauthorized => "unauthorized",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for ProblemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ACME failure with the CA's words and what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AcmeError {
    pub kind: FailureKind,
    pub message: String,
    pub retry_after: Option<SystemTime>,
    /// The CA rejected a nonce even after instant-acme's retries: trying the same step again
    /// at once is expected to work.
    pub bad_nonce: bool,
    /// The request that failed; `None` for local failures (a key, a CSR, `ca_bundle`).
    pub operation: Option<Operation>,
    /// The HTTP status of the answer (or the problem document's own `status` when the
    /// problem came inside an order or a challenge).
    pub status: Option<u16>,
    pub problem: Option<ProblemType>,
    /// The CA no longer knows the account or has deactivated it: set from the problem type
    /// (`accountDoesNotExist`) or after a lookup of the account confirmed it.
    pub account_gone: bool,
}

impl AcmeError {
    /// The CA no longer knows our account (a private CA was reset, the account was
    /// deactivated elsewhere): a new registration, not a retry, is what helps.
    pub fn account_gone(&self) -> bool {
        self.account_gone
    }

    /// A failure that may mean the account is gone but does not say so: `unauthorized`, or a
    /// server error without a problem type (step-ca 0.19 answers 500 `{}` for an account it
    /// lost), on a request signed by the account. Worth one lookup of the account.
    pub fn account_suspect(&self) -> bool {
        let Some(operation) = self.operation else {
            return false;
        };
        if !operation.account_signed() || self.account_gone {
            return false;
        }
        match (&self.problem, self.status) {
            (Some(ProblemType::Unauthorized), status) => status.is_none_or(|s| s < 500),
            (None, Some(status)) => status >= 500,
            _ => false,
        }
    }

    pub(crate) fn local(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
            bad_nonce: false,
            operation: None,
            status: None,
            problem: None,
            account_gone: false,
        }
    }

    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Self::local(FailureKind::Permanent, message)
    }
}

/// Sorts instant-acme's errors into what to do next, with the CA's own detail. A retry time
/// comes only from the answer that failed (carried in [`CaAnswered`]), never from another
/// request running at the same time.
pub(crate) fn classify(
    err: instant_acme::Error,
    operation: Operation,
    directory: &str,
    has_ca_bundle: bool,
) -> AcmeError {
    match err {
        instant_acme::Error::Api(problem) => {
            let status = problem.status;
            from_answer(
                operation,
                &Answer {
                    uri: None,
                    status,
                    problem: Some(&problem),
                    garbled: false,
                    retry_after: None,
                },
                directory,
            )
        }
        instant_acme::Error::Timeout(next) => AcmeError {
            retry_after: next.map(|at| {
                SystemTime::now() + at.saturating_duration_since(std::time::Instant::now())
            }),
            operation: Some(operation),
            ..AcmeError::local(
                FailureKind::Transient,
                format!(
                    "the CA at {directory} did not finish the order in time; it will be retried"
                ),
            )
        },
        instant_acme::Error::Other(inner) => match inner.downcast::<CaAnswered>() {
            Ok(answer) => {
                // The directory and the nonce are fetched inside other operations.
                let operation = if answer.method == http::Method::HEAD {
                    Operation::NewNonce
                } else if answer.method == http::Method::GET && answer.uri == directory {
                    Operation::Directory
                } else {
                    operation
                };
                from_answer(
                    operation,
                    &Answer {
                        uri: Some(&answer.uri),
                        status: Some(answer.status.as_u16()),
                        problem: answer.problem.as_ref(),
                        garbled: answer.garbled,
                        retry_after: answer.retry_after,
                    },
                    directory,
                )
            }
            Err(inner) => {
                let text = inner.to_string();
                let tls = text.contains("certificate")
                    || text.contains("UnknownIssuer")
                    || text.contains("invalid peer");
                let hint = if tls && !has_ca_bundle {
                    "; if this CA uses a private or test root, set [acme] ca_bundle = \"/path/to/root.pem\""
                } else if tls {
                    "; check that [acme] ca_bundle holds the root that signed the CA's TLS certificate"
                } else {
                    "; is the CA reachable from this host (DNS, firewall, proxy)?"
                };
                let text = if tls { text } else { transport_words(&text) };
                AcmeError {
                    operation: Some(operation),
                    ..AcmeError::local(
                        FailureKind::Transient,
                        format!("cannot reach the CA at {directory}: {text}{hint}"),
                    )
                }
            }
        },
        // A success whose body does not parse: cut short on the way when it ends mid-value,
        // otherwise an answer evercert cannot read (broken JSON, a field it does not know).
        // Nothing was refused; said in the operator's words.
        instant_acme::Error::Json(err) => {
            let why = if err.is_eof() {
                "it was cut short on the way"
            } else {
                "evercert cannot read it"
            };
            AcmeError {
                operation: Some(operation),
                ..AcmeError::local(
                    FailureKind::Transient,
                    format!(
                        "the answer of the CA at {directory} to {operation} does not parse ({err}): {why}; it will be retried"
                    ),
                )
            }
        }
        other => AcmeError {
            operation: Some(operation),
            ..AcmeError::local(
                FailureKind::Transient,
                format!("ACME request to {directory} ({operation}) failed: {other}"),
            )
        },
    }
}

/// The facts of one failed answer, whether instant-acme or the HTTP layer saw it.
struct Answer<'a> {
    /// The URL asked, when the HTTP layer saw the answer.
    uri: Option<&'a str>,
    status: Option<u16>,
    problem: Option<&'a instant_acme::Problem>,
    /// The body was meant to be a JSON problem document but does not parse (cut short or
    /// damaged on the way): the CA's verdict is unknown.
    garbled: bool,
    retry_after: Option<SystemTime>,
}

fn from_answer(operation: Operation, answer: &Answer<'_>, directory: &str) -> AcmeError {
    let problem = answer
        .problem
        .and_then(|problem| problem.r#type.as_deref())
        .map(ProblemType::parse);
    let detail = answer
        .problem
        .and_then(|problem| problem.detail.as_deref())
        .filter(|detail| !detail.trim().is_empty());
    let status = answer.status;
    let server_error = status.is_some_and(|status| status >= 500);
    let client_error = status.is_none_or(|status| (400..500).contains(&status));

    let kind =
        if status == Some(429) || (problem == Some(ProblemType::RateLimited) && !server_error) {
            FailureKind::RateLimited
        } else if server_error
            || (client_error && problem == Some(ProblemType::BadNonce))
            || (status.is_none() && problem == Some(ProblemType::ServerInternal))
            // An answer whose problem document was cut short may have been a badNonce or
            // anything else: nothing says the CA refused, so it is tried again soon.
            || (answer.garbled && problem.is_none())
        {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        };

    // What the CA said: `URL answered 403 Forbidden: DETAIL (TYPE)`, with the HTTP status
    // always named, and said plainly when the body explains nothing.
    let mut said = String::new();
    if let Some(uri) = answer.uri {
        said.push_str(uri);
        said.push_str(" answered ");
        if let Some(code) = status {
            match http::StatusCode::from_u16(code) {
                Ok(code) => said.push_str(&code.to_string()),
                Err(_) => said.push_str(&code.to_string()),
            }
        }
    } else if let Some(code) = status {
        said.push_str(&format!("HTTP {code}"));
    }
    match (detail, &problem) {
        (Some(detail), Some(problem)) => said.push_str(&format!(": {detail} ({problem})")),
        (Some(detail), None) => said.push_str(&format!(": {detail}")),
        (None, Some(problem)) => said.push_str(&format!(" ({problem}, no detail)")),
        (None, None) if answer.garbled => said.push_str(" with a problem document cut short"),
        (None, None) => said.push_str(" with no problem detail"),
    }
    let said = said.trim_start_matches(": ").trim_start().to_owned();

    let when = answer.retry_after.map_or_else(String::new, |when| {
        format!(
            "; the CA asks to retry after {}",
            crate::units::rfc3339(time::OffsetDateTime::from(when))
        )
    });
    let account_gone =
        problem == Some(ProblemType::AccountDoesNotExist) && client_error && status != Some(429);

    let message = match kind {
        FailureKind::RateLimited => format!(
            "the CA at {directory} rate limited this client ({operation}): {said}{}",
            if when.is_empty() {
                "; it gave no retry time, evercert backs off".to_owned()
            } else {
                when
            }
        ),
        FailureKind::Transient if status == Some(501) => format!(
            "the CA at {directory} does not implement {operation} (a server error, not a refusal of this request): {said}"
        ),
        FailureKind::Transient if server_error => format!(
            "the CA at {directory} reports a server error (an outage or maintenance) on {operation}: {said}{when}; it will be retried"
        ),
        FailureKind::Transient => {
            format!("the CA at {directory} failed {operation}: {said}; it will be retried")
        }
        FailureKind::Permanent => {
            let advice = match (&problem, operation) {
                (_, Operation::Directory | Operation::NewNonce) => {
                    "; check [acme] directory: it must be the CA's ACME directory URL"
                }
                (Some(ProblemType::RejectedIdentifier), operation) if operation.about_names() => {
                    "; the CA will not issue for this name: remove it from `domains`"
                }
                (Some(ProblemType::Caa), operation) if operation.about_names() => {
                    "; a CAA record forbids this CA: add it to the domain's CAA records"
                }
                (Some(ProblemType::ExternalAccountRequired), Operation::NewAccount) => {
                    "; this CA requires external account binding: set [acme] eab = { kid = \"…\", hmac_key = \"…\" }"
                }
                (Some(ProblemType::AccountDoesNotExist), _) if account_gone => {
                    "; the CA no longer knows this account: evercert registers a new one"
                }
                _ => "",
            };
            if matches!(operation, Operation::Directory | Operation::NewNonce) {
                format!("the CA at {directory} cannot be used: {said}{advice}")
            } else {
                format!("the CA at {directory} refused {operation}: {said}{advice}")
            }
        }
    };
    AcmeError {
        kind,
        message,
        retry_after: answer.retry_after,
        bad_nonce: problem == Some(ProblemType::BadNonce),
        operation: Some(operation),
        status,
        problem,
        account_gone,
    }
}

/// A failed connection in the operator's words: the HTTP client's error chain reads
/// `client error (Connect): tcp connect error: Connection refused (os error 111)`.
fn transport_words(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let words = if lower.contains("connection refused") {
        "the connection was refused (nothing listens on that port)"
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        "its host name does not resolve"
    } else if lower.contains("timed out") {
        "the connection timed out"
    } else if lower.contains("connection reset") {
        "the connection was reset"
    } else if lower.contains("network is unreachable") || lower.contains("no route to host") {
        "there is no route to its host"
    } else {
        return text.to_owned();
    };
    words.to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn connection_failures_are_said_without_the_client_internals() {
        assert_eq!(
            transport_words(
                "client error (Connect): tcp connect error: Connection refused (os error 111)"
            ),
            "the connection was refused (nothing listens on that port)"
        );
        assert_eq!(
            transport_words(
                "client error (Connect): dns error: failed to lookup address information: Name or service not known"
            ),
            "its host name does not resolve"
        );
        assert_eq!(transport_words("something else"), "something else");
    }

    use std::time::Duration;

    use super::*;

    fn api(kind: &str, status: u16) -> instant_acme::Error {
        instant_acme::Error::Api(
            serde_json::from_value(serde_json::json!({
                "type": format!("urn:ietf:params:acme:error:{kind}"),
                "detail": "because",
                "status": status,
            }))
            .unwrap(),
        )
    }

    fn answer(status: u16, retry_in: Option<u64>, body: serde_json::Value) -> instant_acme::Error {
        answer_to(http::Method::POST, status, retry_in, body)
    }

    fn answer_to(
        method: http::Method,
        status: u16,
        retry_in: Option<u64>,
        body: serde_json::Value,
    ) -> instant_acme::Error {
        instant_acme::Error::Other(Box::new(CaAnswered {
            uri: "https://ca/acme/x".to_owned(),
            method,
            status: http::StatusCode::from_u16(status).unwrap(),
            problem: serde_json::from_value(body).ok(),
            garbled: false,
            retry_after: retry_in.map(|secs| SystemTime::now() + Duration::from_secs(secs)),
        }))
    }

    fn problem(kind: &str, status: u16) -> serde_json::Value {
        serde_json::json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": "because",
            "status": status,
        })
    }

    /// The answer the HTTP layer makes of a failed request whose body is `body` (a problem
    /// document, or HTML when it starts with `<`), as sent.
    fn answered_with_body(method: http::Method, status: u16, body: &[u8]) -> instant_acme::Error {
        let mut headers = http::HeaderMap::new();
        let kind = if body.starts_with(b"<") {
            "text/html"
        } else {
            "application/problem+json"
        };
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(kind),
        );
        instant_acme::Error::Other(Box::new(CaAnswered {
            uri: "https://ca/acme/x".to_owned(),
            method,
            status: http::StatusCode::from_u16(status).unwrap(),
            problem: serde_json::from_slice(body).ok(),
            garbled: super::super::http::garbled_json(&headers, body),
            retry_after: None,
        }))
    }

    /// The soak's lost certificate: Pebble's badNonce (a 400) cut in half by the fault proxy
    /// read as "400 with no problem detail", a refusal, and the certificate waited 30+
    /// minutes. An answer cut short says nothing about what the CA decided: transient, on
    /// every request of an order, whatever the 4xx.
    #[test]
    fn an_error_answer_cut_short_is_transient_not_a_refusal() {
        let bad_nonce = br#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce: \"abc\"","status":400}"#;
        let operations = [
            Operation::NewAccount,
            Operation::NewOrder,
            Operation::Authorization,
            Operation::Challenge,
            Operation::Order,
            Operation::Finalize,
            Operation::Certificate,
        ];
        for operation in operations {
            for status in [400, 403, 404, 409] {
                for cut in [1, bad_nonce.len() / 2, bad_nonce.len() - 1] {
                    let err = classify(
                        answered_with_body(http::Method::POST, status, &bad_nonce[..cut]),
                        operation,
                        "https://ca/dir",
                        false,
                    );
                    let label = format!("{operation:?} {status} cut at {cut}");
                    assert_eq!(err.kind, FailureKind::Transient, "{label}: {}", err.message);
                    assert!(!err.account_suspect(), "{label}");
                    for words in ["cut short", "will be retried", "https://ca/acme/x"] {
                        assert!(err.message.contains(words), "{label}: {}", err.message);
                    }
                    assert!(!err.message.contains("refused"), "{label}: {}", err.message);
                }
            }
        }
        // A successful answer cut short (an order, an authorization) fails to parse in
        // instant-acme: transient too, and said so.
        let cut = serde_json::from_slice::<serde_json::Value>(&bad_nonce[..20]).unwrap_err();
        let err = classify(
            instant_acme::Error::Json(cut),
            Operation::Order,
            "https://ca/dir",
            false,
        );
        assert_eq!(err.kind, FailureKind::Transient, "{}", err.message);
        assert!(err.message.contains("cut short"), "{}", err.message);
        // The whole answer is what it says: a badNonce is retried, a refusal is one.
        let whole = classify(
            answered_with_body(http::Method::POST, 400, bad_nonce),
            Operation::NewOrder,
            "https://ca/dir",
            false,
        );
        assert_eq!(whole.kind, FailureKind::Transient);
        assert!(whole.bad_nonce);
        let refused = br#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"no","status":400}"#;
        let refused = classify(
            answered_with_body(http::Method::POST, 400, refused),
            Operation::NewOrder,
            "https://ca/dir",
            false,
        );
        assert_eq!(refused.kind, FailureKind::Permanent, "{}", refused.message);
        // An HTML page from something in between is readable, and no problem document.
        let page = classify(
            answered_with_body(http::Method::POST, 403, b"<html>denied</html>"),
            Operation::NewOrder,
            "https://ca/dir",
            false,
        );
        assert_eq!(page.kind, FailureKind::Permanent, "{}", page.message);
    }

    #[test]
    fn problems_are_classified() {
        let op = Operation::NewOrder;
        assert_eq!(
            classify(api("rateLimited", 429), op, "u", false).kind,
            FailureKind::RateLimited
        );
        assert_eq!(
            classify(api("badNonce", 400), op, "u", false).kind,
            FailureKind::Transient
        );
        assert!(classify(api("badNonce", 400), op, "u", false).bad_nonce);
        assert_eq!(
            classify(api("serverInternal", 500), op, "u", false).kind,
            FailureKind::Transient
        );
        let refused = classify(api("rejectedIdentifier", 400), op, "https://ca/dir", false);
        assert_eq!(refused.kind, FailureKind::Permanent);
        assert!(refused.message.contains("https://ca/dir"));
        assert!(refused.message.contains("remove it from `domains`"));
        assert_eq!(refused.problem, Some(ProblemType::RejectedIdentifier));
        assert_eq!(refused.operation, Some(Operation::NewOrder));
    }

    /// (operation, status, problem type) → kind, advice: the table the issue asks for.
    #[test]
    fn the_operation_status_and_type_decide_together() {
        struct Case {
            operation: Operation,
            status: u16,
            body: serde_json::Value,
            kind: FailureKind,
            says: &'static [&'static str],
            never: &'static [&'static str],
            gone: bool,
            suspect: bool,
        }
        let cases = [
            // step-ca 0.19: a key rollover it does not implement.
            Case {
                operation: Operation::KeyChange,
                status: 501,
                body: problem("rejectedIdentifier", 501),
                kind: FailureKind::Transient,
                says: &["does not implement the account key rollover", "501"],
                never: &["domains"],
                gone: false,
                suspect: false,
            },
            // step-ca 0.19 after a database reset: 500 with `{}`.
            Case {
                operation: Operation::NewOrder,
                status: 500,
                body: serde_json::json!({}),
                kind: FailureKind::Transient,
                says: &[
                    "500 Internal Server Error",
                    "no problem detail",
                    "server error",
                ],
                never: &["(no problem type)"],
                gone: false,
                suspect: true,
            },
            // A 5xx is transient whatever its body claims.
            Case {
                operation: Operation::NewOrder,
                status: 503,
                body: problem("rejectedIdentifier", 503),
                kind: FailureKind::Transient,
                says: &["503 Service Unavailable", "will be retried"],
                never: &["domains"],
                gone: false,
                suspect: false,
            },
            Case {
                operation: Operation::NewOrder,
                status: 400,
                body: problem("rejectedIdentifier", 400),
                kind: FailureKind::Permanent,
                says: &["remove it from `domains`", "400 Bad Request"],
                never: &[],
                gone: false,
                suspect: false,
            },
            // The same type on an account request is no reason to touch `domains`.
            Case {
                operation: Operation::Deactivate,
                status: 400,
                body: problem("rejectedIdentifier", 400),
                kind: FailureKind::Permanent,
                says: &["refused the account deactivation"],
                never: &["domains"],
                gone: false,
                suspect: false,
            },
            Case {
                operation: Operation::NewOrder,
                status: 400,
                body: problem("accountDoesNotExist", 400),
                kind: FailureKind::Permanent,
                says: &["no longer knows this account"],
                never: &[],
                gone: true,
                suspect: false,
            },
            Case {
                operation: Operation::NewOrder,
                status: 401,
                body: problem("unauthorized", 401),
                kind: FailureKind::Permanent,
                says: &["401 Unauthorized"],
                never: &[],
                gone: false,
                suspect: true,
            },
            // Without a body, the status still says what happened.
            Case {
                operation: Operation::Finalize,
                status: 403,
                body: serde_json::json!(null),
                kind: FailureKind::Permanent,
                says: &["403 Forbidden with no problem detail"],
                never: &[],
                gone: false,
                suspect: false,
            },
            Case {
                operation: Operation::NewAccount,
                status: 403,
                body: problem("externalAccountRequired", 403),
                kind: FailureKind::Permanent,
                says: &["eab = {"],
                never: &[],
                gone: false,
                suspect: false,
            },
        ];
        for case in cases {
            let err = classify(
                answer(case.status, None, case.body.clone()),
                case.operation,
                "https://ca/dir",
                false,
            );
            let label = format!("{:?} {} {}", case.operation, case.status, case.body);
            assert_eq!(err.kind, case.kind, "{label}: {}", err.message);
            assert_eq!(err.status, Some(case.status), "{label}");
            assert_eq!(err.account_gone(), case.gone, "{label}: {}", err.message);
            assert_eq!(
                err.account_suspect(),
                case.suspect,
                "{label}: {}",
                err.message
            );
            for words in case.says {
                assert!(err.message.contains(words), "{label}: {}", err.message);
            }
            for words in case.never {
                assert!(!err.message.contains(words), "{label}: {}", err.message);
            }
        }
    }

    #[test]
    fn a_429_on_the_directory_or_nonce_says_rate_limited_with_its_retry_time() {
        let limited = classify(
            answer_to(
                http::Method::GET,
                429,
                Some(600),
                serde_json::json!("not a problem"),
            ),
            Operation::NewAccount,
            "https://ca/dir",
            false,
        );
        assert_eq!(limited.kind, FailureKind::RateLimited);
        for words in ["rate limited", "https://ca/acme/x", "retry after"] {
            assert!(limited.message.contains(words), "{}", limited.message);
        }
        assert!(
            !limited.message.contains("server error"),
            "{}",
            limited.message
        );
        let when = limited.retry_after.unwrap();
        let wait = when.duration_since(SystemTime::now()).unwrap();
        assert!(wait > Duration::from_secs(500), "{wait:?}");

        let outage = classify(
            answer_to(http::Method::HEAD, 503, None, serde_json::json!({})),
            Operation::NewOrder,
            "https://ca/dir",
            false,
        );
        assert_eq!(outage.kind, FailureKind::Transient);
        assert_eq!(outage.operation, Some(Operation::NewNonce));
        assert!(
            outage.message.contains("server error"),
            "{}",
            outage.message
        );
        let wrong = classify(
            answer_to(http::Method::HEAD, 404, None, serde_json::json!({})),
            Operation::NewOrder,
            "https://ca/dir",
            false,
        );
        assert_eq!(wrong.kind, FailureKind::Permanent);
        assert!(
            wrong.message.contains("check [acme] directory"),
            "{}",
            wrong.message
        );
    }

    #[test]
    fn each_error_carries_the_retry_time_of_its_own_answer() {
        // Two orders limited at once: neither sees the other's Retry-After.
        let limited = problem("rateLimited", 429);
        let op = Operation::NewOrder;
        let short = classify(answer(429, Some(60), limited.clone()), op, "u", false);
        let long = classify(answer(429, Some(3600), limited), op, "u", false);
        let wait = |err: &AcmeError| {
            err.retry_after
                .unwrap()
                .duration_since(SystemTime::now())
                .unwrap()
        };
        assert!(wait(&short) <= Duration::from_secs(60));
        assert!(wait(&long) > Duration::from_secs(3000));
        assert!(short.message.contains("(rateLimited)"), "{}", short.message);
        // A 429 without a retry time, after one with: none is invented.
        let bare = classify(answer(429, None, serde_json::json!({})), op, "u", false);
        assert_eq!(bare.retry_after, None);
        assert_eq!(bare.kind, FailureKind::RateLimited);
    }

    #[test]
    fn problem_types_round_trip() {
        for name in [
            "accountDoesNotExist",
            "badNonce",
            "rejectedIdentifier",
            "unauthorized",
            "somethingNew",
        ] {
            let parsed = ProblemType::parse(&format!("{ACME_URN}{name}"));
            assert_eq!(parsed.as_str(), name);
            assert_eq!(ProblemType::parse(name), parsed);
        }
    }
}
