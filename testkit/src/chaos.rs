//! A CA on a bad day, for the soak: the fault proxy ([`super::faultproxy`]) in front of the
//! real Pebble, with a random fault on a share of the requests.
//!
//! Why a stand-in: Pebble answers every request promptly and correctly (apart from its
//! `badNonce`s, which stay on). Stalls, resets, 5xx, 429 with `Retry-After` and answers cut
//! short (successes and errors) are what a real CA, or a proxy in front of it, does under
//! load; the proxy injects them per request, everything else reaches Pebble.

use std::time::Duration;

use super::faultproxy::{Fault, Rule};

/// An error answer cut short: Pebble's `badNonce` (a 400) truncated mid-document. `Truncate`
/// makes it only when it falls on one of Pebble's own 5 % of rejected nonces (about 1 in 2,500
/// requests at 5 % chaos, so once in a few soak runs: the CI failure it caused was rare); as
/// a fault of its own it comes in every run.
pub const CUT_BAD_NONCE: &str =
    r#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an inv"#;

/// The fault mix: `percent` of the requests get one of the faults (equally likely), the
/// others are forwarded untouched.
pub fn ca_chaos(percent: u32) -> Fault {
    mix(percent, true)
}

/// [`ca_chaos`] as proxy rules: on `nonce_path` (newNonce, asked with HEAD) the same mix
/// without the cut badNonce, since an answer to HEAD has no body to cut (the client would see
/// a bare 400, a different fault: a CA refusing to hand out nonces); every other request
/// gets the whole mix. Each fault is as likely everywhere.
pub fn ca_chaos_rules(percent: u32, nonce_path: &str) -> Vec<Rule> {
    vec![
        Rule::path(nonce_path, mix(percent, false)),
        Rule::every_request(mix(percent, true)),
    ]
}

fn mix(percent: u32, cut_error: bool) -> Fault {
    let percent = percent.min(100);
    let each = percent * 100 / 7;
    let mut faults = vec![
        // Slow, then answered: within any sane timeout.
        (each, Fault::Delay(Duration::from_millis(1500))),
        // Never answered: the client's own timeout must end it.
        (each, Fault::Stall),
        (each, Fault::Reset),
        (each, Fault::Status(500)),
        (
            each,
            Fault::RateLimited {
                retry_after_secs: 2,
            },
        ),
        (each, Fault::Truncate),
    ];
    if cut_error {
        faults.push((each, Fault::Body(400, CUT_BAD_NONCE)));
    }
    let faulted: u32 = faults.iter().map(|(weight, _)| weight).sum();
    faults.insert(0, (10_000 - faulted, Fault::Delay(Duration::ZERO)));
    Fault::Mix(faults)
}

/// splitmix64: small, seedable, good enough to pick faults.
pub fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
