//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Record, replay and compare RPC traffic (HTTP/1.1, HTTP/2, gRPC).
#[derive(Debug, Parser)]
#[command(name = "reprise", version, about, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
    /// A librdkafka setting for every kafka:// topic this run reaches
    /// (`security.protocol=SASL_SSL`, `sasl.username=...`,
    /// `ssl.ca.location=FILE`); repeatable, and wins over --kafka-config.
    #[arg(long = "kafka-option", global = true, value_name = "KEY=VALUE")]
    pub kafka_option: Vec<String>,
    /// A properties file of librdkafka settings (`KEY=VALUE` lines, as
    /// Kafka's own `client.properties`) for every kafka:// topic.
    #[arg(long = "kafka-config", global = true, value_name = "FILE")]
    pub kafka_config: Option<std::path::PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List exchanges, one line each.
    Ls(LsArgs),
    /// Show one exchange whole, with its downstream calls.
    Show(ShowArgs),
    /// Summarise a recording: counts, rates, latency per endpoint.
    Stats(StatsArgs),
    /// Import a HAR 1.2 or GoReplay (.gor) file into a tape.
    Import(ImportArgs),
    /// Export a recording to HAR 1.2.
    Export(ExportArgs),
    /// Copy a recording (tape, HAR, .gor or Kafka topic) to a tape or a
    /// Kafka topic, streaming.
    Copy(CopyArgs),
    /// Record: a reverse proxy in front of a service, writing every
    /// exchange it forwards to a tape.
    Record(Box<RecordArgs>),
    /// Replay: send the recorded calls to a target, open-loop, and report
    /// what came back and how fast.
    Replay(Box<ReplayArgs>),
    /// Compare a replay with the recording it replays: exit 1 when
    /// something regressed.
    Diff(Box<DiffArgs>),
    /// Mock: serve recorded calls, scoped by the replayed call they were
    /// made for; exit 1 when a call was missed.
    Mock(Box<MockArgs>),
    /// Mirror: record, as `record` does, and send a copy of every
    /// recorded call to a shadow, off the primary's path; with --compare,
    /// exit 1 when the shadow's answers regressed.
    Mirror(Box<MirrorArgs>),
    /// Run the built-in demo: record a sample service, then inspect the tape.
    Demo(DemoArgs),
    /// Test a build of a service in a fail-closed sandbox: run COMMAND
    /// with its dependencies mocked from the recording, replay the
    /// recording to it, compare answers and downstream calls; exit 1 when
    /// something regressed, a mock call missed or an escape was attempted.
    Test(Box<TestArgs>),
    /// The local CA that signs the certificates the egress proxy shows
    /// inside CONNECT tunnels: create it, print the variables that make
    /// clients trust it.
    #[command(subcommand)]
    Ca(CaCommand),
}

/// `reprise ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the CA: an ECDSA P-256 key (ca-key.pem, mode 0600), a
    /// self-signed certificate valid ten years (ca.pem), and bundle.pem
    /// (the system's roots + the CA).
    Init(CaInitArgs),
    /// Print `export` lines for the variables each ecosystem's clients
    /// read (eval "$(reprise ca env)"), and how to make Java trust the CA.
    Env(CaDirArgs),
}

/// Where the CA lives.
#[derive(Debug, Args, Clone, Default)]
pub struct CaDirArgs {
    /// The CA directory [default: $REPRISE_CA_DIR, else
    /// $XDG_DATA_HOME/reprise/ca, else ~/.local/share/reprise/ca].
    #[arg(long, visible_alias = "ca-dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `reprise ca init`.
#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// Where the CA goes.
    #[command(flatten)]
    pub dir: CaDirArgs,
    /// Replace an existing CA (clients that trust the old one must be
    /// told the new one).
    #[arg(long)]
    pub force: bool,
}

/// Which exchanges a command looks at.
#[derive(Debug, Args, Default, Clone)]
pub struct FilterArgs {
    /// Only these methods (repeatable; `GET,POST` works too).
    #[arg(long, value_name = "METHOD")]
    pub method: Vec<String>,
    /// Only paths matching this glob (`/api/*`; `*` also matches `/`).
    #[arg(long, value_name = "GLOB")]
    pub path: Vec<String>,
    /// Only these statuses: `404`, `5xx`, `200-299`, several with `,`.
    #[arg(long, value_name = "SPEC")]
    pub status: Vec<String>,
    /// Only exchanges recorded at or after this time (RFC 3339 or ns).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only exchanges recorded before this time (RFC 3339 or ns).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// More conditions, FIELD=VALUE: method, path, authority, status,
    /// header (`header=x-tenant:acme*`), protocol (h1, h2, grpc).
    #[arg(long = "match", value_name = "FIELD=VALUE")]
    pub matches: Vec<String>,
}

/// `reprise ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// A tape, or a HAR or .gor file (detected from its content).
    pub input: PathBuf,
    /// Which exchanges to list.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Stop after this many lines.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Keep reading as the tape grows (like `tail -f`); stop with Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
}

/// `reprise show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A tape, or a HAR or .gor file.
    pub input: PathBuf,
    /// The exchange id (hex), or a unique prefix of at least 6 digits.
    pub id: String,
    /// The exchange as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Show bodies whole instead of cutting them at 64 KiB.
    #[arg(long)]
    pub full: bool,
}

/// `reprise stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// A tape, or a HAR or .gor file.
    pub input: PathBuf,
    /// Which exchanges to count.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// The statistics as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `reprise import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A HAR 1.2 or GoReplay file; the format is read from the content.
    pub input: PathBuf,
    /// The tape to write.
    #[arg(long, short, value_name = "TAPE")]
    pub out: PathBuf,
    /// Append to the tape if it exists (by default an existing tape is an error).
    #[arg(long)]
    pub append: bool,
    /// Redaction before storage, as `record` does (a HAR saved from a
    /// browser carries its cookies and tokens).
    #[command(flatten)]
    pub redact: RedactArgs,
}

/// `reprise copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// What to copy: a tape, a HAR or .gor file, or a kafka:// topic.
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// Where: a new tape (or an existing one with --append), or a
    /// kafka:// topic (appended to).
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Append to the tape if it exists (by default an existing tape is an
    /// error).
    #[arg(long)]
    pub append: bool,
    /// Which exchanges to copy.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Copy at most N exchanges (those the filters let through).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Redaction on the way, as `record` does (a HAR saved from a
    /// browser carries its cookies and tokens).
    #[command(flatten)]
    pub redact: RedactArgs,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `reprise export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A tape, or a HAR or .gor file.
    pub input: PathBuf,
    /// The HAR file to write (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub har: PathBuf,
    /// Which exchanges to export.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `reprise mirror`.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Where the copies go: http://host:port or https://host:port.
    #[arg(long, value_name = "URL")]
    pub shadow: String,
    /// Write what the shadow answered to this tape (mode 0600), each
    /// linked to the recorded call.
    #[arg(long, value_name = "TAPE")]
    pub shadow_out: Option<PathBuf>,
    /// Send the shadow this header instead of the recorded one: "NAME:
    /// VALUE" (repeatable), e.g. a staging credential for a redacted one.
    #[arg(long, value_name = "NAME: VALUE")]
    pub set_header: Vec<String>,
    /// Do not send the shadow this header (repeatable).
    #[arg(long, value_name = "NAME")]
    pub drop_header: Vec<String>,
    /// Give up on a copy after this long, connecting included.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub shadow_timeout: String,
    /// Trust only this CA (PEM) for an https shadow.
    #[arg(long, value_name = "FILE")]
    pub shadow_ca: Option<PathBuf>,
    /// Accept any certificate from an https shadow (self-signed staging).
    #[arg(long, conflicts_with = "shadow_ca")]
    pub shadow_insecure: bool,
    /// At the end, compare the shadow's answers with the primary's, as
    /// `reprise diff` does, and exit 1 when something regressed.
    #[arg(long)]
    pub compare: bool,
    /// With --compare: write the comparison report as JSON to this file.
    #[arg(long, value_name = "FILE", requires = "compare")]
    pub diff_json: Option<PathBuf>,
    /// How to compare (with --compare).
    #[command(flatten)]
    pub rules: CompareArgs,
    /// The recording proxy in front of the primary (--upstream).
    #[command(flatten)]
    pub record: RecordArgs,
}

/// `reprise mock`.
#[derive(Debug, Args)]
pub struct MockArgs {
    /// The recording: a tape, a HAR file or a GoReplay file.
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// Where to listen: HTTP/1.1 and h2c (HTTP/2 with prior knowledge) on
    /// one port. Calls come to it directly, or through it as an HTTP proxy
    /// (`http_proxy`, `https_proxy`: absolute-form requests and CONNECT
    /// tunnels carrying TLS, h2c or HTTP/1.1), which keeps each call's own
    /// authority. Default 127.0.0.1:8081, unless --recorded-listeners
    /// (or --db with a recording of database calls only).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Also listen where the recording's egress listeners were
    /// (`record --egress`, `--egress-route`, `--egress-db`): the service
    /// reaches the mock as it reached the recorder. A route's calls are
    /// matched with the authority it forwarded to; a database's listener
    /// speaks its protocol. Without --listen, only there.
    #[arg(long)]
    pub recorded_listeners: bool,
    /// Answer the recording's database NAME (`record --egress-db
    /// NAME=LISTEN=URL`) at LISTEN (IP:PORT), in the protocol it was
    /// recorded in: PostgreSQL (TLS with a leaf of the reprise CA when the
    /// client asks and there is one; any password) or Redis. Repeatable.
    /// Also served at their recorded addresses with --recorded-listeners.
    /// A database call carries no header naming its replayed call: it is
    /// matched across the whole recording (see docs/cli.md).
    #[arg(long = "db", value_name = "NAME=LISTEN")]
    pub db: Vec<String>,
    /// Write every call the mock answered to this new tape (mode 0600):
    /// the call as received, the answer as served, the recorded call that
    /// answered it or the miss, linked to the replayed exchange.
    #[arg(long, value_name = "TAPE")]
    pub out: Option<PathBuf>,
    /// The reprise CA (`reprise ca init`) whose leaves answer CONNECT
    /// tunnels carrying TLS [default: as `reprise ca` finds it; without
    /// one, TLS tunnels are refused and plain calls, h2c and HTTP/1.1
    /// tunnels still served].
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Serve the recording's inbound calls instead of its downstream
    /// calls: a recording made in front of the service this mock stands
    /// in for. They belong to no replayed call: implies --global.
    #[arg(long)]
    pub inbound: bool,
    /// Serve a call that belongs to no replayed call (or whose replayed
    /// call has no recorded calls) from all recorded calls.
    #[arg(long)]
    pub global: bool,
    /// Recorded calls matching FIELD=VALUE answer any call with their key,
    /// in any scope, any number of times (auth tokens, configuration);
    /// repeatable, all must match: method, path (glob), authority, status,
    /// header, protocol.
    #[arg(long, value_name = "FIELD=VALUE")]
    pub shared: Vec<String>,
    /// When identical calls outnumber the recorded ones: error (a miss),
    /// repeat-last or cycle.
    #[arg(long, value_name = "POLICY", default_value = "error")]
    pub exhausted: String,
    /// The authority every call is matched as: the downstream this mock
    /// stands in for (default: the call's own, from its target or Host).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub authority: Option<String>,
    /// Leave the authority out of the match.
    #[arg(long)]
    pub ignore_authority: bool,
    /// Answer streamed gRPC messages at once, not at their recorded gaps.
    #[arg(long)]
    pub no_timing: bool,
    /// Print a line per call on stderr: the call, the replayed call it was
    /// made for, and the recorded call that answered it (or the miss).
    #[arg(long)]
    pub log: bool,
    /// Send a missed call to this real upstream (http://host:port) and
    /// answer with what it says; still counted as a miss. Off by default:
    /// a miss never reaches a real system unless asked.
    #[arg(long, value_name = "URL")]
    pub fallthrough: Option<String>,
    /// Let missed writes (POST, PUT, PATCH, DELETE: any method but GET,
    /// HEAD and OPTIONS) and gRPC calls fall through too. Without it they
    /// are answered as misses and never reach the upstream.
    #[arg(long, requires = "fallthrough")]
    pub fallthrough_writes: bool,
    /// How missed calls go to the --fallthrough upstream: auto (HTTP/2
    /// calls over HTTP/2 when it speaks HTTP/2, the rest over HTTP/1.1),
    /// h1 or h2 (an upstream that does not speak it is an error at start).
    #[arg(
        long,
        value_name = "PROTOCOL",
        default_value = "auto",
        requires = "fallthrough"
    )]
    pub upstream_protocol: UpstreamProtocolArg,
    /// Bytes of a request body read to match it (K, M, G, KiB, MiB, GiB
    /// suffixes); the recorder's --max-body.
    #[arg(long, value_name = "SIZE", default_value = "1MiB")]
    pub max_body: String,
    /// Client connections: how many, and how long they may wait.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// The recorder's redaction rules, applied to each call (and to the
    /// recorded calls) before matching: a recording whose secrets were
    /// redacted still matches calls that carry them.
    #[command(flatten)]
    pub redact: RedactArgs,
}

/// The client connections a listener takes (`record`, `mirror`, `mock`).
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// A client must send its first request head within this long of
    /// connecting (a TLS handshake included); a connection that sends
    /// nothing is closed. A later HTTP/1.1 request head has this long
    /// from its first byte.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub header_timeout: String,
    /// Close a connection with no call in flight for this long between
    /// calls (HTTP/1.1 keep-alive, HTTP/2 with no open stream).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub idle_timeout: String,
    /// Connections open at once; past it new ones wait until one closes
    /// (default: from the open-files limit, (RLIMIT_NOFILE - 64 - 4 x serving threads) / 2).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
}

/// Redaction before storage (`record`) and before matching (`mock`).
#[derive(Debug, Args)]
pub struct RedactArgs {
    /// Also redact this header's values (repeatable).
    #[arg(long, value_name = "NAME")]
    pub redact_header: Vec<String>,
    /// Redact this JSON body field (`$.card.number`, `$..password`;
    /// repeatable), in any body that is JSON, compressed or not.
    #[arg(long, value_name = "PATH")]
    pub redact_json: Vec<String>,
    /// Also redact this query parameter's values (repeatable).
    #[arg(long, value_name = "NAME")]
    pub redact_query: Vec<String>,
    /// Also redact this form field (urlencoded and multipart; repeatable).
    #[arg(long, value_name = "NAME")]
    pub redact_form: Vec<String>,
    /// Do not redact the default credential headers, query parameters and
    /// form fields (docs/cli.md lists them).
    #[arg(long)]
    pub no_default_redaction: bool,
}

/// `reprise record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Where to listen: HTTP/1.1 and HTTP/2 (h2c, or TLS with ALPN) on one port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Where to forward: http://host:port or https://host:port.
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// The tape to write (mode 0600; an existing tape is an error unless --append).
    #[arg(long, short, value_name = "TAPE")]
    pub out: PathBuf,
    /// Append to the tape if it exists.
    #[arg(long)]
    pub append: bool,
    /// Write a directory of tapes at --out, a new tape once the current
    /// one holds SIZE (K, M, G, KiB, MiB, GiB suffixes).
    #[arg(long, value_name = "SIZE")]
    pub rotate_size: Option<String>,
    /// Write a directory of tapes at --out, a new tape every DURATION
    /// (`1h`, `15min`).
    #[arg(long, value_name = "DURATION")]
    pub rotate_every: Option<String>,
    /// With --rotate-size or --rotate-every: keep the newest N tapes, the
    /// oldest removed.
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// The service name stored with each exchange.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub service: String,
    /// Record this fraction of exchanges (0.0-1.0), chosen by exchange id.
    #[arg(long, value_name = "RATE", default_value_t = 1.0)]
    pub sample: f64,
    /// Record only exchanges matching FIELD=VALUE (repeatable): method,
    /// path (glob), authority, status (5xx, 404, 200-299), header
    /// (`header=x-tenant:acme*`), protocol (h1, h2, grpc).
    #[arg(long = "match", value_name = "FIELD=VALUE")]
    pub matches: Vec<String>,
    /// Record at most N exchanges per second; the rest are counted as dropped.
    #[arg(long, value_name = "N")]
    pub max_record_rate: Option<u32>,
    /// Bytes of each body kept in the recording (K, M, G, KiB, MiB, GiB suffixes).
    #[arg(long, value_name = "SIZE", default_value = "1MiB")]
    pub max_body: String,
    #[command(flatten)]
    pub redact: RedactArgs,
    /// Keep the client's Host header instead of the upstream's.
    #[arg(long)]
    pub preserve_host: bool,
    /// Do not add Via, X-Forwarded-For and X-Forwarded-Proto.
    #[arg(long)]
    pub no_forwarded_headers: bool,
    /// Serve TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Trust only this CA (PEM) for an https upstream, not the system roots.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Serve /metrics (Prometheus) and /healthz here.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// How calls go to the upstream: auto (gRPC, and HTTP/2 calls when
    /// the upstream speaks HTTP/2, over HTTP/2; the rest over HTTP/1.1),
    /// h1 (HTTP/1.1 only: gRPC calls fail) or h2 (HTTP/2 only; an
    /// upstream that does not speak it is an error at start).
    #[arg(long, value_name = "PROTOCOL", default_value = "auto")]
    pub upstream_protocol: UpstreamProtocolArg,
    /// Give up connecting to the upstream after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub connect_timeout: String,
    /// Give up waiting for the upstream's response head after this long.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub upstream_timeout: String,
    /// Client connections: how many, and how long they may wait.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// At shutdown, how long in-flight calls may take to finish.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub drain_timeout: String,
    /// Exchanges waiting for the tape writer before new ones are dropped.
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub queue: usize,
    /// The tape's zstd level (negative: faster, larger tapes), or `none`
    /// to store blocks uncompressed.
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "1",
        allow_hyphen_values = true
    )]
    pub compression: String,
    /// Threads serving clients, each with its own socket on the port
    /// (default: one per two cores, at least one).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Also record the service's own calls: a forward proxy here (point
    /// the service's HTTP_PROXY and HTTPS_PROXY at it): plain HTTP in
    /// absolute form, and CONNECT tunnels carrying TLS (a certificate from
    /// the reprise CA, --ca-dir), h2c or HTTP/1.1; each call is linked to
    /// the inbound call it served by its traceparent (docs/egress.md).
    #[arg(long, value_name = "ADDR")]
    pub egress: Option<String>,
    /// Also record the service's calls to one downstream, for clients
    /// that take a base URL: a listener on LISTEN forwarding to URL
    /// (http or https, with an optional path prefix), recorded as route
    /// NAME (repeatable).
    #[arg(long = "egress-route", value_name = "NAME=LISTEN=URL")]
    pub egress_routes: Vec<String>,
    /// Also record the service's calls to a PostgreSQL or Redis server: a
    /// TCP listener on LISTEN passing every byte to URL
    /// (postgres://host:port, redis://host:port, rediss:// for TLS to the
    /// server), each query or command recorded with its answer as
    /// listener NAME (repeatable; docs/databases.md).
    #[arg(long = "egress-db", value_name = "NAME=LISTEN=URL")]
    pub egress_dbs: Vec<String>,
    /// How long after an inbound call finished a call carrying its trace
    /// id is still linked to it.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub link_window: String,
    /// Give every inbound call a trace of its own (exact links even when
    /// a caller reuses its trace id), keeping the caller's trace id in
    /// tracestate as reprise-caller: splits the caller's trace.
    #[arg(long)]
    pub fresh_trace: bool,
    /// Trust only this CA (PEM) for https downstreams of the egress
    /// listeners, not the system roots.
    #[arg(long, value_name = "FILE")]
    pub egress_ca: Option<PathBuf>,
    /// The reprise CA (`reprise ca init`) whose certificates the --egress
    /// proxy shows inside CONNECT tunnels carrying TLS, and --egress-db
    /// shows PostgreSQL clients that ask for TLS [default: as `reprise ca`
    /// finds it; without one, such tunnels are refused and such clients
    /// told the listener speaks no TLS].
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

/// `--upstream-protocol`: which HTTP version calls take to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamProtocolArg {
    /// gRPC, and HTTP/2 calls to an upstream that speaks HTTP/2, over
    /// HTTP/2; the rest over HTTP/1.1.
    Auto,
    /// HTTP/1.1 only.
    H1,
    /// HTTP/2 only.
    H2,
}

impl From<UpstreamProtocolArg> for reprise_net::UpstreamProtocol {
    fn from(arg: UpstreamProtocolArg) -> Self {
        match arg {
            UpstreamProtocolArg::Auto => reprise_net::UpstreamProtocol::Auto,
            UpstreamProtocolArg::H1 => reprise_net::UpstreamProtocol::H1,
            UpstreamProtocolArg::H2 => reprise_net::UpstreamProtocol::H2,
        }
    }
}

/// Which protocol replayed calls are sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    /// The one each call was recorded in.
    Recorded,
    /// HTTP/1.1 for every call (gRPC calls are skipped).
    H1,
    /// HTTP/2 for every call.
    H2,
}

/// `reprise replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording: a tape, a HAR file or a GoReplay file.
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// Where every call goes: http://host:port or https://host:port. A
    /// recorded Host never decides it.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// Write the replayed exchanges to this tape (mode 0600), each linked
    /// to the recorded exchange it replays.
    #[arg(long, short, value_name = "TAPE")]
    pub out: Option<PathBuf>,
    /// The recorded timing, sped up by this factor (2: twice as fast). The default.
    #[arg(long, value_name = "FACTOR", conflicts_with_all = ["rate", "max"])]
    pub speed: Option<f64>,
    /// This many calls per second, evenly spaced.
    #[arg(long, value_name = "N", conflicts_with = "max")]
    pub rate: Option<f64>,
    /// As fast as the target answers, bounded by --concurrency.
    #[arg(long)]
    pub max: bool,
    /// Calls in flight at most.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub concurrency: usize,
    /// Threads sending calls (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Connections per protocol (default: one per call in flight on
    /// HTTP/1.1, one per 100 on HTTP/2).
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Protocol to send in.
    #[arg(long, value_enum, default_value = "recorded")]
    pub protocol: ProtocolArg,
    /// Start again from the beginning when the recording ends.
    #[arg(long = "loop", conflicts_with = "follow")]
    pub repeat: bool,
    /// Stop sending after this long (10s, 5m).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Send at most this many calls.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Which recorded exchanges to replay.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Send this header instead of the recorded one: "NAME: VALUE" (repeatable).
    #[arg(long, value_name = "NAME: VALUE")]
    pub set_header: Vec<String>,
    /// Do not send this header (repeatable).
    #[arg(long, value_name = "NAME")]
    pub drop_header: Vec<String>,
    /// Rewrite paths: every match of REGEX becomes REPLACEMENT ($1 for a
    /// group); repeatable, applied in order. Split at the first `=` not
    /// escaped: an `=` in REGEX is written `\=`.
    #[arg(long, value_name = "REGEX=REPLACEMENT")]
    pub rewrite_path: Vec<String>,
    /// Send the recorded Host / :authority instead of the target's (the
    /// call still goes to the target).
    #[arg(long)]
    pub preserve_host: bool,
    /// Accept any certificate from an https target (self-signed staging).
    #[arg(long)]
    pub insecure: bool,
    /// Trust only this CA (PEM) for an https target.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Give up on a call after this long, connecting included.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: String,
    /// Response bytes kept per call in --out.
    #[arg(long, value_name = "SIZE", default_value = "1MiB")]
    pub max_body: String,
    /// Read the tape as it grows (live shadowing) until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Print the calls that would be sent, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No progress display (the report is still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// Compare what comes back with the recording, as `reprise diff`
    /// does, and exit 1 when something regressed.
    #[arg(long, conflicts_with_all = ["follow", "dry_run"])]
    pub compare: bool,
    /// With --compare: replay to this second copy of the old build at the
    /// same time, as the baseline that tells noise from regressions.
    #[arg(long, value_name = "URL", requires = "compare")]
    pub baseline_target: Option<String>,
    /// With --compare: write the comparison report as JSON to this file.
    #[arg(long, value_name = "FILE", requires = "compare")]
    pub diff_json: Option<PathBuf>,
    /// How --compare compares.
    #[command(flatten)]
    pub rules: CompareArgs,
    /// Redaction of the results before --out stores them, as `record`
    /// does.
    #[command(flatten)]
    pub redact: RedactArgs,
}

/// `reprise diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The recording that was replayed (tape, HAR or .gor).
    #[arg(value_name = "RECORDED")]
    pub recorded: PathBuf,
    /// The replay's results (`reprise replay --out`): a tape or topic;
    /// several (a group of replayers' results, each member's tape) are
    /// merged, each recorded exchange compared once.
    #[arg(value_name = "REPLAYED", required = true, num_args = 1..)]
    pub replayed: Vec<PathBuf>,
    /// The same recording replayed against a second copy of the old build
    /// (`reprise replay --out`): what differs between the two copies is
    /// noise, not a regression.
    #[arg(long, value_name = "BASELINE")]
    pub baseline: Option<PathBuf>,
    /// The downstream calls the new build made, as its mock recorded them
    /// (`reprise mock --out`; repeatable): compared with the calls
    /// recorded under each replayed exchange (missing, new, changed
    /// requests by field path), as differences of that exchange.
    #[arg(long, value_name = "MOCK.tape")]
    pub downstream: Vec<PathBuf>,
    /// With --baseline and --downstream: the calls the baseline made
    /// (its mock's `--out`; repeatable), so that what differs in them too
    /// is noise.
    #[arg(long, value_name = "MOCK.tape")]
    pub baseline_downstream: Vec<PathBuf>,
    /// How to compare.
    #[command(flatten)]
    pub compare: CompareArgs,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// How `diff` and `replay --compare` compare.
#[derive(Debug, Args, Default, Clone)]
pub struct CompareArgs {
    /// Do not compare what this JSON path selects, nor below it
    /// (`$.id`, `$..created_at`, `$.items[*].etag`; repeatable).
    #[arg(long, value_name = "PATH")]
    pub ignore: Vec<String>,
    /// Compare the array this JSON path selects as a multiset: order does
    /// not matter (repeatable).
    #[arg(long, value_name = "PATH")]
    pub unordered: Vec<String>,
    /// Comparison rules from a TOML file: `ignore`, `unordered`,
    /// `ignore_headers`, `compare_headers`, and `[[rule]]` tables with an
    /// `endpoint` ("POST /api/orders") and its own `ignore` / `unordered`.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Do not compare this response header (repeatable).
    #[arg(long, value_name = "NAME")]
    pub ignore_header: Vec<String>,
    /// Compare this response header even though it is ignored by default
    /// (Date, Server, Content-Length, ...; repeatable).
    #[arg(long, value_name = "NAME")]
    pub compare_header: Vec<String>,
    /// Without a baseline: take differences between two timestamps close
    /// to each other, two UUIDs or two generated ids as noise. A guess,
    /// labelled as one in every report.
    #[arg(long)]
    pub auto_noise: bool,
    /// With a baseline: a path regressed only if |r-n|/(r+n) is above
    /// this (r, n: pairs where the candidate, the baseline differ).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.2)]
    pub noise_relative: f64,
    /// With a baseline: ... and |r-n| / pairs of the endpoint above this.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0003)]
    pub noise_absolute: f64,
    /// Compare gRPC messages by field name, with the types of this .proto
    /// file (imports beside it; repeatable).
    #[arg(long, value_name = "FILE.proto")]
    pub proto: Vec<PathBuf>,
    /// Compare gRPC messages by field name, with the types of this
    /// encoded FileDescriptorSet (`protoc -o`, `buf build -o`).
    #[arg(long, value_name = "FILE", conflicts_with = "proto")]
    pub descriptor_set: Option<PathBuf>,
    /// Compare gRPC messages by field name, with the types this gRPC
    /// server tells by server reflection (http://host:port).
    #[arg(long, value_name = "URL", conflicts_with_all = ["proto", "descriptor_set"])]
    pub reflection: Option<String>,
    /// Also write JUnit XML to this file: one test case per endpoint, a
    /// failure listing the regressed field paths.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Memory for the recording's responses while comparing; a bigger
    /// recording is compared part by part, cut on disk by exchange id.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub max_memory: String,
    /// Write a rules file (the --rules format) that ignores what was only
    /// ever noise, per endpoint, for a person to review and commit.
    #[arg(long, value_name = "FILE")]
    pub suggest_rules: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page: sortable
    /// endpoint table, differences by field path with a side-by-side
    /// viewer, regression groups, latency charts.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// A run that compared fewer pairs than this is not a pass: exit 4
    /// unless something regressed [default: 1].
    #[arg(long, value_name = "N")]
    pub min_compared: Option<u64>,
}

/// `reprise demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo's tapes (default: a temporary directory,
    /// removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `reprise test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The recording: inbound exchanges and their downstream calls
    /// (`reprise record --egress`).
    #[arg(value_name = "RECORDING")]
    pub recording: PathBuf,
    /// The port the service listens on (inside the sandbox, on 127.0.0.1):
    /// where the recording is replayed to.
    #[arg(long, value_name = "PORT")]
    pub port: u16,
    /// Where to write the replayed tape, the mock's tape of downstream
    /// calls and the reports (created if missing; earlier results in it
    /// are replaced).
    #[arg(long, value_name = "DIR", default_value = "reprise-test")]
    pub out: PathBuf,
    /// How long the service may take to open --port.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub start_timeout: String,
    /// Also run the old build (a shell command) in a sandbox of its own,
    /// replayed the same way, as the baseline that tells noise from
    /// regressions.
    #[arg(long, value_name = "COMMAND")]
    pub baseline_cmd: Option<String>,
    /// Run the service under libfaketime, its clock set to each exchange's
    /// recorded time as it is replayed (replays one call at a time).
    #[arg(long)]
    pub faketime: bool,
    /// The local CA the service is told to trust (`reprise ca init`):
    /// SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS,
    /// GRPC_DEFAULT_SSL_ROOTS_FILE_PATH and CURL_CA_BUNDLE name its files
    /// [default: the `reprise ca` directory, when it holds a CA].
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// How the recording is replayed.
    #[command(flatten)]
    pub replay: TestReplayArgs,
    /// How answers and downstream calls are compared.
    #[command(flatten)]
    pub compare: CompareArgs,
    /// How the mock answers the service's downstream calls.
    #[command(flatten)]
    pub mock: TestMockArgs,
    /// Redaction of the replayed results and of the calls the mock
    /// matches, as `record` does.
    #[command(flatten)]
    pub redact: RedactArgs,
    /// Refused: nothing in `reprise test` reaches a real system.
    #[arg(long, value_name = "URL", hide = true)]
    pub fallthrough: Option<String>,
    /// Refused, as --fallthrough.
    #[arg(long, hide = true)]
    pub fallthrough_writes: bool,
    /// The service: a program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `reprise test`: the replay's options (as `reprise replay` has them).
#[derive(Debug, Args)]
pub struct TestReplayArgs {
    /// The recorded timing, sped up by this factor (2: twice as fast).
    #[arg(long, value_name = "FACTOR", conflicts_with_all = ["rate", "max"])]
    pub speed: Option<f64>,
    /// This many calls per second, evenly spaced.
    #[arg(long, value_name = "N", conflicts_with = "max")]
    pub rate: Option<f64>,
    /// As fast as the service answers, bounded by --concurrency.
    #[arg(long)]
    pub max: bool,
    /// Calls in flight at most [default: 32; 1 with --faketime].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Threads sending calls (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Connections per protocol.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Protocol to send in.
    #[arg(long, value_enum, default_value = "recorded")]
    pub protocol: ProtocolArg,
    /// Send at most this many calls.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Which recorded exchanges to replay.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Send this header instead of the recorded one: "NAME: VALUE" (repeatable).
    #[arg(long, value_name = "NAME: VALUE")]
    pub set_header: Vec<String>,
    /// Do not send this header (repeatable).
    #[arg(long, value_name = "NAME")]
    pub drop_header: Vec<String>,
    /// Rewrite paths: REGEX=REPLACEMENT, as `reprise replay` does.
    #[arg(long, value_name = "REGEX=REPLACEMENT")]
    pub rewrite_path: Vec<String>,
    /// Send the recorded Host / :authority instead of 127.0.0.1:PORT.
    #[arg(long)]
    pub preserve_host: bool,
    /// Give up on a call after this long, connecting included.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: String,
    /// Response bytes kept per call in the replayed tape.
    #[arg(long, value_name = "SIZE", default_value = "1MiB")]
    pub max_body: String,
    /// No progress display (the reports are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

/// `reprise test`: the mock's options, prefixed with `mock-`.
#[derive(Debug, Args)]
pub struct TestMockArgs {
    /// When identical calls outnumber the recorded ones: error (a miss),
    /// repeat-last or cycle.
    #[arg(long, value_name = "POLICY", default_value = "error")]
    pub mock_exhausted: String,
    /// Bytes of a request body read to match it; the recorder's --max-body.
    #[arg(long, value_name = "SIZE", default_value = "1MiB")]
    pub mock_max_body: String,
    /// Recorded calls matching FIELD=VALUE answer any call with their
    /// key, in any scope, any number of times (repeatable).
    #[arg(long, value_name = "FIELD=VALUE")]
    pub mock_shared: Vec<String>,
    /// Serve a call that belongs to no replayed call from all recorded
    /// calls.
    #[arg(long)]
    pub mock_global: bool,
    /// Leave the authority out of the match.
    #[arg(long)]
    pub mock_ignore_authority: bool,
    /// Answer streamed gRPC messages at once, not at their recorded gaps.
    #[arg(long)]
    pub mock_no_timing: bool,
    /// Print a line per downstream call on stderr: the call, the replayed
    /// call it was made for, what answered it.
    #[arg(long)]
    pub mock_log: bool,
}
