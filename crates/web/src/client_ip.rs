//! The client's address behind the gateway: `X-Forwarded-For` / `X-Real-IP` are believed
//! only when the direct peer is one of `TRUSTED_PROXIES`.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses or CIDR ranges; `loopback` names both
    /// loopback ranges (the default).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "loopback" {
                nets.push("127.0.0.0/8".parse().expect("static"));
                nets.push("::1/128".parse().expect("static"));
            } else if let Ok(net) = item.parse::<IpNet>() {
                nets.push(net);
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                nets.push(IpNet::from(ip));
            } else {
                return Err(format!(
                    "TRUSTED_PROXIES: `{item}` is not an address or CIDR range"
                ));
            }
        }
        Ok(TrustedProxies(nets))
    }

    pub fn loopback() -> Self {
        Self::parse("loopback").expect("static")
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr().map(|a| a.ip())?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let headers = req.headers();
        if let Some(xff) = headers.get("x-forwarded-for").and_then(|h| h.to_str().ok()) {
            // The rightmost address not of a trusted proxy is the client.
            for part in xff.rsplit(',') {
                if let Ok(ip) = part.trim().parse::<IpAddr>()
                    && !self.trusts(ip)
                {
                    return Some(ip);
                }
            }
            if let Some(first) = xff.split(',').next().and_then(|p| p.trim().parse().ok()) {
                return Some(first);
            }
        }
        if let Some(ip) = headers
            .get("x-real-ip")
            .and_then(|h| h.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
        Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let proxies = TrustedProxies::loopback();
        let from_proxy = TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "203.0.113.9, 127.0.0.1"))
            .to_http_request();
        assert_eq!(
            proxies.client_ip(&from_proxy),
            Some("203.0.113.9".parse().unwrap())
        );
        let from_stranger = TestRequest::default()
            .peer_addr("198.51.100.7:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "203.0.113.9"))
            .to_http_request();
        assert_eq!(
            proxies.client_ip(&from_stranger),
            Some("198.51.100.7".parse().unwrap())
        );
        let real_ip = TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().unwrap())
            .insert_header(("x-real-ip", "203.0.113.10"))
            .to_http_request();
        assert_eq!(
            proxies.client_ip(&real_ip),
            Some("203.0.113.10".parse().unwrap())
        );
        assert!(TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").is_ok());
        assert!(TrustedProxies::parse("nonsense").is_err());
    }
}
