//! What the recording says about the service's way out: the egress
//! listeners it used at record time (where the mock listens in the
//! sandbox), the names it looked up (what the DNS stub answers), and the
//! environment that points the service's clients at them.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use reprise_intercept::{CaError, CaFiles, LocalCa};
use reprise_mock::RecordedListener;
use reprise_model::{Exchange, Role};

/// The egress listeners the recording's downstream calls came through
/// (`reprise_mock::recorded_listeners`), each with its address: where
/// the mock listens in the sandbox.
pub(crate) fn recorded_listeners(
    exchanges: &[Exchange],
) -> anyhow::Result<Vec<(SocketAddr, RecordedListener)>> {
    reprise_mock::recorded_listeners(exchanges)
        .into_iter()
        .map(|recorded| match recorded.listen.parse::<SocketAddr>() {
            Ok(addr) => Ok((addr, recorded)),
            Err(_) => bail!("the recording's egress listener {recorded} is not IP:PORT"),
        })
        .collect()
}

fn is_downstream(exchange: &Exchange) -> bool {
    exchange.role == Role::Downstream as i32
}

/// The host of an authority (`[::1]:8080` -> `::1`).
fn host_of(authority: &str) -> String {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.to_string(),
        _ => authority.to_string(),
    }
    .to_ascii_lowercase()
}

/// The names the recording's downstream calls went to (not addresses):
/// the ones the sandbox's DNS stub answers.
pub(crate) fn dns_names(exchanges: &[Exchange]) -> Vec<String> {
    let mut names = BTreeSet::new();
    for exchange in exchanges.iter().filter(|e| is_downstream(e)) {
        let Some(request) = &exchange.request else {
            continue;
        };
        let host = host_of(&request.authority);
        if host.is_empty() || host.parse::<IpAddr>().is_ok() {
            continue;
        }
        names.insert(host);
    }
    names.into_iter().collect()
}

/// The local CA (`reprise ca init`) the service is told to trust: the
/// one in `--ca-dir` (an error when it is missing or unusable), else the
/// default one when there is one.
pub(crate) fn local_ca(dir: Option<&Path>) -> anyhow::Result<Option<Arc<LocalCa>>> {
    let explicit = dir.is_some();
    let dir = match reprise_intercept::ca::resolve_dir(dir) {
        Ok(dir) => dir,
        Err(_) if !explicit => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match LocalCa::load(&dir) {
        Ok(ca) => Ok(Some(ca)),
        Err(e) if explicit => Err(anyhow::Error::new(e).context("--ca-dir")),
        Err(CaError::Missing { .. }) => Ok(None),
        Err(e) => {
            // Not asked for: a service that needs it will say so in its
            // failed calls.
            eprintln!(
                "reprise: the local CA cannot be used, the service is not told to trust it: {}",
                reprise_model::error::one_line(&e)
            );
            Ok(None)
        }
    }
}

/// Hosts that never go through a proxy: the service's own loopback.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The environment that sends the service's clients to the mock: the
/// proxy variables when the recording went through the forward proxy,
/// `NO_PROXY` for loopback and the routes' hosts, and the CA variables.
pub(crate) fn service_env(
    listeners: &[RecordedListener],
    ca: Option<&CaFiles>,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(proxy) = listeners.iter().find(|l| l.route.is_none()) {
        let url = format!("http://{}", proxy.listen);
        for name in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "grpc_proxy",
        ] {
            env.push((name.to_string(), url.clone()));
        }
    }
    let mut no_proxy: Vec<String> = LOOPBACK.iter().map(|h| h.to_string()).collect();
    for route in listeners.iter().filter_map(|l| l.route.as_ref()) {
        let host = host_of(&route.authority);
        if !host.is_empty() && !no_proxy.contains(&host) {
            no_proxy.push(host);
        }
    }
    let no_proxy = no_proxy.join(",");
    env.push(("NO_PROXY".to_string(), no_proxy.clone()));
    env.push(("no_proxy".to_string(), no_proxy));
    if let Some(ca) = ca {
        let bundle = ca.bundle.display().to_string();
        for name in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
            "CURL_CA_BUNDLE",
        ] {
            env.push((name.to_string(), bundle.clone()));
        }
        // Node adds this file to its own roots: the CA alone.
        env.push((
            "NODE_EXTRA_CA_CERTS".to_string(),
            ca.cert.display().to_string(),
        ));
    }
    env
}

#[cfg(test)]
mod tests {
    use reprise_model::{RecordSource, Request};

    use super::*;

    fn downstream(route: &str, listener: &str, authority: &str) -> Exchange {
        Exchange {
            role: Role::Downstream as i32,
            source: Some(RecordSource {
                recorder: "proxy".into(),
                route: route.into(),
                listener: listener.into(),
                ..Default::default()
            }),
            request: Some(Request {
                method: "POST".into(),
                scheme: "https".into(),
                authority: authority.into(),
                path: "/charge".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn listeners_names_and_environment() {
        let exchanges = vec![
            downstream("", "127.0.0.1:3128", "payments.example:443"),
            downstream("", "127.0.0.1:3128", "inventory.internal:50051"),
            downstream("inv", "127.0.0.1:7001", "10.0.0.7:50051"),
            downstream("inv", "127.0.0.1:7001", "10.0.0.7:50051"),
            Exchange {
                role: Role::Inbound as i32,
                ..downstream("", "127.0.0.1:8080", "shop.example")
            },
        ];
        let listeners: Vec<RecordedListener> = recorded_listeners(&exchanges)
            .unwrap()
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(listeners.len(), 2);
        assert!(listeners[0].route.is_none());
        assert_eq!(
            dns_names(&exchanges),
            ["inventory.internal", "payments.example"]
        );
        let env = service_env(&listeners, None);
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:3128"));
        assert_eq!(get("grpc_proxy"), Some("http://127.0.0.1:3128"));
        assert_eq!(get("no_proxy"), Some("localhost,127.0.0.1,::1,10.0.0.7"));
        assert_eq!(get("SSL_CERT_FILE"), None);
    }

    #[test]
    fn routes_alone_set_no_proxy_variables() {
        let listeners: Vec<RecordedListener> =
            recorded_listeners(&[downstream("pay", "127.0.0.1:7002", "pay.example")])
                .unwrap()
                .into_iter()
                .map(|(_, l)| l)
                .collect();
        let env = service_env(&listeners, None);
        assert!(
            env.iter()
                .all(|(n, _)| !n.to_ascii_lowercase().ends_with("_proxy")
                    || n.starts_with("NO")
                    || n.starts_with("no"))
        );
        assert!(
            env.iter()
                .any(|(n, v)| n == "NO_PROXY" && v.ends_with(",pay.example"))
        );
    }

    #[test]
    fn a_bad_listener_is_named() {
        let error = recorded_listeners(&[downstream("", "somewhere", "a")]).unwrap_err();
        assert!(error.to_string().contains("somewhere"), "{error}");
    }

    #[test]
    fn the_local_ca() {
        let dir = tempfile::tempdir().unwrap();
        let error = local_ca(Some(dir.path())).unwrap_err();
        assert!(
            reprise_model::error::one_line(error.as_ref()).contains("reprise ca init"),
            "{error:#}"
        );
        let files = reprise_intercept::ca::init(dir.path(), false).unwrap();
        let found = local_ca(Some(dir.path())).unwrap().unwrap();
        let found = found.files();
        assert_eq!(found, &files);
        let env = service_env(&[], Some(found));
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(
            get("REQUESTS_CA_BUNDLE"),
            Some(files.bundle.display().to_string())
        );
        assert_eq!(
            get("NODE_EXTRA_CA_CERTS"),
            Some(files.cert.display().to_string())
        );
    }
}
