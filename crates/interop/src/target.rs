//! Where an imported call went: its scheme, authority and path, checked
//! by one set of rules for every importer (HAR's `request.url`, a `.gor`
//! request's target and `Host`). A call reprise could not send again (an
//! `ftp://` URL, a port past 65535, an unclosed `[`) is refused here,
//! and the importer skips it with the reason.

/// Schemes of calls reprise records and replays (`ws`/`wss`: the
/// upgrade requests of WebSockets, which browsers list in HAR files).
const SCHEMES: [&str; 4] = ["http", "https", "ws", "wss"];

/// The parts of a checked URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Lowercase.
    pub scheme: String,
    pub authority: String,
    /// From the first `/` (or `?`), without a fragment; `/` when empty.
    pub path: String,
}

/// Splits and checks an absolute URL.
pub(crate) fn absolute(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not an absolute URL: {url:?}"))?;
    let scheme = scheme.to_ascii_lowercase();
    if !SCHEMES.contains(&scheme.as_str()) {
        return Err(format!(
            "scheme {scheme:?} is not http, https, ws or wss in URL {url:?}"
        ));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() {
        return Err(format!("no host in URL {url:?}"));
    }
    check_authority(authority).map_err(|why| format!("{why} in URL {url:?}"))?;
    let mut path = rest[end..].split('#').next().unwrap_or("").to_string();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    Ok(Target {
        scheme,
        authority: authority.to_string(),
        path,
    })
}

/// Checks an authority (`host`, `host:port`, `[v6]:port`): valid
/// characters, brackets closed, a port that is a number up to 65535.
pub(crate) fn check_authority(authority: &str) -> Result<(), String> {
    authority
        .parse::<http::uri::Authority>()
        .map_err(|_| format!("invalid host {authority:?}"))?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (address, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("invalid host {authority:?}: no closing ]"))?;
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("invalid IPv6 address [{address}]"));
            }
            match after.strip_prefix(':') {
                Some(port) => (address, Some(port)),
                None if after.is_empty() => (address, None),
                None => return Err(format!("invalid host {authority:?}")),
            }
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err(format!("no host in {authority:?}"));
    }
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        let valid = port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
        if !valid {
            return Err(format!("port {port:?} is not a number from 0 to 65535"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_reprise_can_call_again_pass() {
        let target = absolute("HTTPS://shop.example:8443/cart?x=1#top").unwrap();
        assert_eq!(
            target,
            Target {
                scheme: "https".into(),
                authority: "shop.example:8443".into(),
                path: "/cart?x=1".into(),
            }
        );
        assert_eq!(absolute("http://[::1]:80").unwrap().path, "/");
        assert_eq!(absolute("http://a?q").unwrap().path, "/?q");
        assert!(absolute("wss://chat.example/socket").is_ok());
        assert!(check_authority("user:pw@host:1").is_ok());
    }

    #[test]
    fn urls_it_cannot_are_refused_with_the_reason() {
        for (url, why) in [
            ("http://[::1", "invalid host \"[::1\""),
            ("http://[::1]x/", "invalid host"),
            ("http://[zz::1]/", "invalid IPv6 address"),
            ("http://a:99999999/", "port \"99999999\" is not a number"),
            ("http://a:8x/", "port \"8x\""),
            (
                "ftp://files.example/x",
                "scheme \"ftp\" is not http, https, ws or wss",
            ),
            ("http:///x", "no host"),
            ("http://a b/", "invalid host"),
            ("/relative", "not an absolute URL"),
        ] {
            let err = absolute(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
