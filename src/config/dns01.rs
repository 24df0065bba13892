//! `[certificate.dns01]`: a hook, or the built-in RFC 2136 updater, and the propagation
//! check. The TSIG secret is not read here: `key_secret_file` is read (and its mode
//! checked) when an update is sent, so the secret never sits in the parsed configuration.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use time::Duration;

use super::ChallengeSettings;
use super::parse::{Parser, join};
use super::raw::{RawDns01, RawRfc2136};
use crate::dns01::{
    DEFAULT_PROPAGATION_TIMEOUT, KeyAlgorithm, PropagationSettings, Rfc2136Challenge,
    Rfc2136Settings,
};

/// Longer than this is a typo: a renewal would sit for hours on one record.
const MAX_PROPAGATION_TIMEOUT: Duration = Duration::hours(1);

impl Parser<'_> {
    pub(super) fn dns01(
        &mut self,
        path: &str,
        raw: RawDns01,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Option<ChallengeSettings> {
        let timeout = raw.propagation_timeout.is_some().then(|| {
            let timeout = self.duration(
                path,
                "propagation_timeout",
                raw.propagation_timeout,
                Duration::ZERO,
            );
            if !timeout.is_positive() || timeout > MAX_PROPAGATION_TIMEOUT {
                self.error_at(
                    path,
                    "propagation_timeout",
                    "`propagation_timeout` must be more than 0s and at most 1h".into(),
                    Some("write propagation_timeout = \"2m\"".into()),
                );
            }
            timeout
                .clamp(Duration::seconds(1), MAX_PROPAGATION_TIMEOUT)
                .unsigned_abs()
        });
        let resolvers = self.resolvers(path, raw.resolvers.unwrap_or_default());
        let authoritative_port = match raw.authoritative_port {
            None => 53,
            Some(port) => u16::try_from(port)
                .ok()
                .filter(|port| *port != 0)
                .unwrap_or_else(|| {
                    self.error_at(
                        path,
                        "authoritative_port",
                        format!("authoritative_port = {port} is not a port number"),
                        Some(
                            "leave it out (53), or write the port the zone's servers answer on"
                                .into(),
                        ),
                    );
                    53
                }),
        };
        let asked_for_check =
            timeout.is_some() || !resolvers.is_empty() || raw.authoritative_port.is_some();
        let propagation = PropagationSettings {
            timeout: timeout.unwrap_or(DEFAULT_PROPAGATION_TIMEOUT),
            resolvers,
            authoritative_port,
        };
        match (raw.hook, raw.rfc2136) {
            (Some(_), Some(_)) => {
                self.error_at(
                    path,
                    "rfc2136",
                    "[certificate.dns01] has both `hook` and `rfc2136`".into(),
                    Some("keep rfc2136 for evercert's own updates, or hook for your script".into()),
                );
                None
            }
            (None, None) => {
                self.error_at(
                    path,
                    "",
                    "[certificate.dns01] needs `hook` or `rfc2136`".into(),
                    Some(
                        "write rfc2136 = { server = \"ns1.example.com:53\", key_name = \"evercert.\", key_algorithm = \"hmac-sha256\", key_secret_file = \"/etc/evercert/tsig.key\" } or hook = \"/usr/local/bin/dns-hook\""
                            .into(),
                    ),
                );
                None
            }
            (Some(hook), None) => {
                if raw.zone.is_some() {
                    self.error_at(
                        path,
                        "zone",
                        "`zone` is only used with `rfc2136`; a hook updates whatever zone it likes"
                            .into(),
                        Some("remove zone".into()),
                    );
                }
                let wait = self.duration(path, "wait", raw.wait, Duration::ZERO);
                Some(ChallengeSettings::Dns01 {
                    hook,
                    wait,
                    propagation: asked_for_check.then_some(propagation),
                })
            }
            (None, Some(rfc2136)) => {
                if raw.wait.is_some() {
                    self.error_at(
                        path,
                        "wait",
                        "`wait` is only used with `hook`: the built-in updater asks every authoritative server until each serves the record".into(),
                        Some("remove wait; set propagation_timeout to bound the check".into()),
                    );
                }
                let zone = raw.zone.and_then(|zone| self.dns_name(path, "zone", &zone));
                let update = self.rfc2136(&join(path, "rfc2136"), rfc2136, resolve)?;
                Some(ChallengeSettings::Dns01Rfc2136(Box::new(
                    Rfc2136Challenge {
                        update,
                        zone,
                        propagation,
                    },
                )))
            }
        }
    }

    fn rfc2136(
        &mut self,
        path: &str,
        raw: RawRfc2136,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Option<Rfc2136Settings> {
        let server = self.required(path, "server", raw.server, "\"ns1.example.com:53\"");
        let server = server.and_then(|server| {
            let server = server.trim().to_owned();
            if server_is_valid(&server) {
                Some(server)
            } else {
                self.error_at(
                    path,
                    "server",
                    format!("server = \"{server}\" is not HOST:PORT"),
                    Some("write the zone's primary server, like server = \"ns1.example.com:53\" or \"[2001:db8::53]:53\"".into()),
                );
                None
            }
        });
        let key_name = self
            .required(path, "key_name", raw.key_name, "\"evercert.\"")
            .and_then(|name| self.dns_name(path, "key_name", &name));
        let key_algorithm = match raw.key_algorithm {
            None => Some(KeyAlgorithm::HmacSha256),
            Some(text) => KeyAlgorithm::parse(&text).or_else(|| {
                let known: Vec<&str> = KeyAlgorithm::ALL.iter().map(|alg| alg.as_str()).collect();
                self.error_at(
                    path,
                    "key_algorithm",
                    format!("key_algorithm = \"{text}\" is not supported"),
                    Some(format!(
                        "write one of {} (as in the server's key)",
                        known.join(", ")
                    )),
                );
                None
            }),
        };
        let key_secret_file = self.required(
            path,
            "key_secret_file",
            raw.key_secret_file,
            "\"/etc/evercert/tsig.key\"",
        );
        Some(Rfc2136Settings {
            server: server?,
            key_name: key_name?,
            key_algorithm: key_algorithm?,
            key_secret_file: resolve(&key_secret_file?),
        })
    }

    /// `resolvers`: `IP` (port 53) or `IP:PORT` each.
    fn resolvers(&mut self, path: &str, texts: Vec<String>) -> Vec<SocketAddr> {
        let mut resolvers = Vec::new();
        for text in texts {
            let trimmed = text.trim();
            match trimmed
                .parse::<SocketAddr>()
                .or_else(|_| trimmed.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            {
                Ok(addr) => resolvers.push(addr),
                Err(_) => self.error_at(
                    path,
                    "resolvers",
                    format!("resolvers: \"{text}\" is not an IP address with an optional port"),
                    Some("write resolvers = [\"9.9.9.9:53\", \"2620:fe::fe\"]".into()),
                ),
            }
        }
        resolvers
    }

    /// A DNS name, lower case and fully qualified.
    fn dns_name(&mut self, path: &str, key: &str, text: &str) -> Option<String> {
        let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if valid {
            Some(format!("{name}."))
        } else {
            self.error_at(
                path,
                key,
                format!("{key} = \"{text}\" is not a DNS name"),
                Some(format!("write it like {key} = \"example.com.\"")),
            );
            None
        }
    }
}

/// `HOST:PORT`, `[IPv6]:PORT`, or a bare host or IP (port 53).
fn server_is_valid(server: &str) -> bool {
    if server.parse::<SocketAddr>().is_ok() || server.parse::<IpAddr>().is_ok() {
        return true;
    }
    let (host, port_ok) = match server.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().is_ok_and(|port| port != 0)),
        None => (server, true),
    };
    port_ok
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}
