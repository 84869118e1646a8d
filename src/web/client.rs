//! The client's address. Behind a reverse proxy the TCP peer is the proxy, so the
//! address is read from `X-Forwarded-For` — but only as far as trusted proxies wrote
//! it (`TRUSTED_PROXIES`): walking the list from the right, the first address that is
//! not a trusted proxy is the client. Anything further left was written by the client
//! and proves nothing.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// The client's address, from the peer and the headers.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let mut client = peer?.ip();
    if trusted.is_empty() {
        return Some(client);
    }
    // Unparsable entries stay in place (as None): the walk stops at them.
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|part| part.trim().parse::<IpAddr>().ok())
        .collect();
    let mut hops = forwarded.iter().rev();
    while trusted.iter().any(|net| net.contains(&client)) {
        match hops.next() {
            Some(Some(previous)) => client = *previous,
            _ => break,
        }
    }
    Some(client)
}

/// `client_ip` of a request, as text (`unknown` without a peer address).
pub fn of(req: &actix_web::HttpRequest) -> String {
    let trusted = req
        .app_data::<actix_web::web::Data<crate::web::state::AppState>>()
        .map(|state| state.config.trusted_proxies.as_slice())
        .unwrap_or(&[]);
    client_ip(req.peer_addr(), req.headers(), trusted)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in xff {
            map.append(
                "x-forwarded-for".parse().unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let peer = Some("203.0.113.9:5000".parse().unwrap());
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(peer, &headers(&["1.2.3.4"]), &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_ip(peer, &headers(&["1.2.3.4"]), &[]),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let peer = Some("10.0.0.2:5000".parse().unwrap());
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        // The client forged the first entry; the proxies appended the real ones.
        let h = headers(&["6.6.6.6, 198.51.100.7", "10.0.0.1"]);
        assert_eq!(client_ip(peer, &h, &trusted), Some(ip("198.51.100.7")));
        // Only proxies: the farthest proxy is all we know.
        assert_eq!(
            client_ip(peer, &headers(&["10.0.0.1"]), &trusted),
            Some(ip("10.0.0.1"))
        );
        // Garbage stops the walk: nothing to its left is believed.
        let h = headers(&["198.51.100.7, not-an-ip, 10.0.0.1"]);
        assert_eq!(client_ip(peer, &h, &trusted), Some(ip("10.0.0.1")));
    }
}
