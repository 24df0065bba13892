//! One DNS exchange at a time over UDP, through hickory's client, each bounded by
//! [`EXCHANGE_TIMEOUT`] (hickory retries inside it); answers are capped by the UDP
//! datagram size hickory reads.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Message, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType, TSigner};

use super::Dns01Error;

/// One question and its answer, retries included.
pub(super) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the system's resolvers are listed.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// A resolv.conf is a few lines; anything bigger is not one.
const RESOLV_CONF_MAX: u64 = 64 << 10;

fn client(server: SocketAddr, signer: Option<TSigner>) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(Duration::from_secs(2)))
        .with_signer(signer)
        .build();
    let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
    // The background task ends when the last handle is dropped.
    tokio::spawn(background);
    client
}

/// Sends one query and returns the first response, or why there is none.
pub(super) async fn query(
    server: SocketAddr,
    name: &Name,
    record_type: RecordType,
    recursion_desired: bool,
) -> Result<DnsResponse, String> {
    let mut query = Query::query(name.clone(), record_type);
    query.set_query_class(DNSClass::IN);
    let mut options = DnsRequestOptions::default();
    options.recursion_desired = recursion_desired;
    options.use_edns = true;
    let client = client(server, None);
    first_response(server, client.lookup(query, options)).await
}

/// Sends a signed update and returns the server's response.
pub(super) async fn send_update(
    server: SocketAddr,
    signer: TSigner,
    message: Message,
) -> Result<DnsResponse, String> {
    let client = client(server, Some(signer));
    first_response(server, client.send(DnsRequest::from(message))).await
}

async fn first_response<S, E>(server: SocketAddr, mut responses: S) -> Result<DnsResponse, String>
where
    S: futures_util::Stream<Item = Result<DnsResponse, E>> + Unpin,
    E: std::fmt::Display,
{
    match tokio::time::timeout(EXCHANGE_TIMEOUT, responses.next()).await {
        Err(_) => Err(format!(
            "no answer from {server} within {} s",
            EXCHANGE_TIMEOUT.as_secs()
        )),
        Ok(None) => Err(format!("no answer from {server}")),
        Ok(Some(Err(err))) => Err(format!("{server}: {err}")),
        Ok(Some(Ok(response))) => Ok(response),
    }
}

/// Asks the resolvers in turn (recursion desired) until one answers with NOERROR or
/// NXDOMAIN; SERVFAIL or silence moves on to the next.
pub(super) async fn resolve(
    resolvers: &[SocketAddr],
    name: &Name,
    record_type: RecordType,
) -> Result<DnsResponse, Dns01Error> {
    let mut failures = Vec::new();
    for resolver in resolvers {
        match query(*resolver, name, record_type, true).await {
            Ok(response)
                if matches!(
                    response.metadata.response_code,
                    hickory_proto::op::ResponseCode::NoError
                        | hickory_proto::op::ResponseCode::NXDomain
                ) =>
            {
                return Ok(response);
            }
            Ok(response) => failures.push(format!(
                "{resolver} answered {}",
                response.metadata.response_code
            )),
            Err(err) => failures.push(err),
        }
    }
    Err(Dns01Error::Lookup {
        name: format!("{record_type} {name}"),
        message: format!(
            "{}; check `resolvers` in [certificate.dns01] (or /etc/resolv.conf)",
            failures.join("; ")
        ),
    })
}

/// The configured resolvers, or the system's.
pub(super) fn resolvers(configured: &[SocketAddr]) -> Result<Vec<SocketAddr>, Dns01Error> {
    if !configured.is_empty() {
        return Ok(configured.to_vec());
    }
    let error = |message: String| Dns01Error::Lookup {
        name: "the system's DNS resolvers".into(),
        message,
    };
    let text =
        crate::fsread::read_to_string(Path::new(RESOLV_CONF), RESOLV_CONF_MAX).map_err(|err| {
            error(format!(
                "{RESOLV_CONF}: {err}; set `resolvers` in [certificate.dns01]"
            ))
        })?;
    let found = parse_resolv_conf(&text);
    if found.is_empty() {
        return Err(error(format!(
            "{RESOLV_CONF} names no nameserver; set `resolvers` in [certificate.dns01]"
        )));
    }
    Ok(found)
}

/// The `nameserver` lines of a resolv.conf, on port 53.
fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            // A link-local IPv6 address may carry a zone (`fe80::1%eth0`): not usable here.
            let ip = words.next()?.parse::<std::net::IpAddr>().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// A `HOST:PORT` (or bare `HOST`, port 53) from the configuration, looked up by the system.
pub(super) async fn server_addr(server: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let with_port = if server
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        server.to_owned()
    } else {
        format!("{server}:53")
    };
    let lookup = tokio::net::lookup_host(with_port.clone());
    match tokio::time::timeout(EXCHANGE_TIMEOUT, lookup).await {
        Err(_) => Err(format!(
            "looking up {with_port} took over {} s",
            EXCHANGE_TIMEOUT.as_secs()
        )),
        Ok(Err(err)) => Err(format!("cannot look up {with_port}: {err}")),
        Ok(Ok(mut addrs)) => addrs
            .next()
            .ok_or_else(|| format!("{with_port} has no address")),
    }
}

/// A name from text, fully qualified.
pub(super) fn fqdn(text: &str) -> Result<Name, String> {
    let mut name =
        Name::from_ascii(text).map_err(|err| format!("{text:?} is not a DNS name: {err}"))?;
    name.set_fqdn(true);
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_on_port_53() {
        let text = "# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver ::1\nnameserver fe80::1%eth0\noptions edns0\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
