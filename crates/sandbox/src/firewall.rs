//! The network inside the namespace: `lo` up, a default route over it, and
//! the nftables ruleset that lets only the allowed loopback ports through.
//!
//! Every other TCP connection (IPv4 and IPv6, any address, loopback
//! included) is redirected to the escape reporter, which reads where it was
//! going; UDP is dropped and counted, except DNS to the stub.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::SandboxError;

/// The nftables table reprise owns inside the namespace.
const TABLE: &str = "reprise";
/// The counter of dropped UDP packets.
const UDP_COUNTER: &str = "udp_dropped";
/// The DNS stub's port on 127.0.0.1.
pub(crate) const DNS_PORT: u16 = 53;

/// Brings `lo` up and routes every address over it (IPv4 and IPv6), so a
/// connection to any address reaches the ruleset instead of failing with
/// "network unreachable" before reprise can see it. The routes name their
/// source address: without it a connection to 10.1.2.3 leaves from
/// 0.0.0.0, and the reporter's answers (its FIN) could not reach it. Run on
/// a thread inside the namespace.
pub(crate) fn bring_up_loopback() -> Result<(), SandboxError> {
    run_ip(&["link", "set", "lo", "up"])?;
    run_ip(&["route", "add", "default", "dev", "lo", "src", "127.0.0.1"])?;
    // No IPv6 in the namespace (disabled by the host): then IPv6
    // connections fail at once and there is nothing to redirect. (This
    // file is the namespace's own: /proc/sys/net follows the reader.)
    let ipv6 = std::fs::read_to_string("/proc/sys/net/ipv6/conf/lo/disable_ipv6")
        .is_ok_and(|disabled| disabled.trim() == "0");
    if ipv6 {
        run_ip(&["-6", "route", "add", "default", "dev", "lo", "src", "::1"])?;
    }
    Ok(())
}

fn run_ip(args: &[&str]) -> Result<(), SandboxError> {
    run_tool("ip", "Debian package iproute2", args, None).map(|_| ())
}

/// The ruleset: `allowed` loopback ports (and the DNS stub) pass, any other
/// TCP connection goes to `reporter_port`, UDP other than DNS is dropped.
pub(crate) fn ruleset(allowed: &[u16], reporter_port: u16) -> String {
    let mut ports = vec![DNS_PORT];
    ports.extend(allowed.iter().copied().filter(|p| *p != DNS_PORT));
    let ports = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "table inet {TABLE} {{
  counter {UDP_COUNTER} {{ }}
  chain nat_out {{
    type nat hook output priority -100; policy accept;
    ip daddr 127.0.0.0/8 tcp dport {{ {ports} }} accept
    ip6 daddr ::1 tcp dport {{ {ports} }} accept
    meta l4proto tcp redirect to :{reporter_port}
  }}
  chain filter_out {{
    type filter hook output priority 0; policy accept;
    ip daddr 127.0.0.1 udp dport {DNS_PORT} accept
    ip saddr 127.0.0.1 udp sport {DNS_PORT} accept
    meta l4proto udp counter name {UDP_COUNTER} drop
  }}
}}
"
    )
}

/// Loads `rules` with `nft -f -`. Run on a thread inside the namespace.
pub(crate) fn load(rules: &str) -> Result<(), SandboxError> {
    run_tool("nft", "Debian package nftables", &["-f", "-"], Some(rules)).map(|_| ())
}

/// How many UDP packets the ruleset dropped. Run on a thread inside the
/// namespace.
pub(crate) fn udp_dropped() -> Result<u64, SandboxError> {
    let json = run_tool(
        "nft",
        "Debian package nftables",
        &["-j", "list", "counter", "inet", TABLE, UDP_COUNTER],
        None,
    )?;
    parse_counter(&json)
}

/// The packet count in `nft -j list counter`'s answer.
fn parse_counter(json: &str) -> Result<u64, SandboxError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| SandboxError::Counter(e.to_string()))?;
    value
        .get("nftables")
        .and_then(|items| items.as_array())
        .into_iter()
        .flatten()
        .find_map(|item| item.get("counter")?.get("packets")?.as_u64())
        .ok_or_else(|| SandboxError::Counter(format!("no packet count in nft's answer: {json}")))
}

/// Runs a setup tool, feeding it `stdin`, and returns its stdout.
fn run_tool(
    tool: &'static str,
    package: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, SandboxError> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SandboxError::ToolMissing {
            tool,
            package,
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| SandboxError::setup(format!("write to {tool}"), e))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| SandboxError::setup(format!("wait for {tool}"), e))?;
    if !output.status.success() {
        return Err(SandboxError::ToolFailed {
            command: format!("{tool} {}", args.join(" ")),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_lets_the_allowed_ports_and_dns_through_and_redirects_the_rest() {
        let rules = ruleset(&[8080, 53, 9090], 40000);
        assert!(rules.contains("ip daddr 127.0.0.0/8 tcp dport { 53, 8080, 9090 } accept"));
        assert!(rules.contains("ip6 daddr ::1 tcp dport { 53, 8080, 9090 } accept"));
        assert!(rules.contains("meta l4proto tcp redirect to :40000"));
        assert!(rules.contains("meta l4proto udp counter name udp_dropped drop"));
    }

    #[test]
    fn the_counter_is_read_from_nfts_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "inet", "name": "udp_dropped", "table": "reprise",
             "handle": 3, "packets": 7, "bytes": 29}}]}"#;
        assert_eq!(parse_counter(json).unwrap(), 7);
        let error = parse_counter(r#"{"nftables": []}"#).unwrap_err();
        assert!(error.to_string().contains("no packet count"), "{error}");
        assert!(parse_counter("not json").is_err());
    }
}
