//! A PostgreSQL connection to the mock: the start-up (TLS when the mock
//! has a leaf to show, any password accepted, the recorded server
//! parameters), then each query or extended batch answered statement by
//! statement from the recording, re-encoded for the messages the client
//! sent this time.

use crate::MockMiss;

use super::DbServed;
use super::connection::DbStep;
use super::key::{one_line, params_text};
use super::serve::{DbConn, MISS_SQLSTATE, Outcome};
use reprise_model::{DbCall, Header, Protocol, SqlError, SqlStatement};
use reprise_wire::pg::{
    Answer, FirstPacket, Session, SessionEvent, Step, Unit, encode, serve as wire,
};

/// The server parameters a client is told when the recording has no
/// start-up for the database: what libpq and drivers check.
const DEFAULT_PARAMETERS: &[(&str, &str)] = &[
    ("server_version", "15.0 (reprise mock)"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
];

/// A PostgreSQL connection's state between reads.
pub(crate) struct PgState {
    session: Session,
    /// The transaction status the next ReadyForQuery carries.
    status: u8,
}

impl PgState {
    pub(crate) fn new(conn: &DbConn) -> PgState {
        PgState {
            session: Session::new(conn.max_body()),
            status: b'I',
        }
    }

    /// Answers what `bytes` complete into `out`; what to do next.
    pub(crate) fn feed(&mut self, conn: &DbConn, bytes: &[u8], out: &mut Vec<u8>) -> DbStep {
        let events = match self.session.feed(bytes) {
            Ok(events) => events,
            Err(e) => {
                conn.note(&format!(
                    "not PostgreSQL (or not protocol 3): {e}; connection closed"
                ));
                encode::backend::error(out, b'E', &fatal("08P01", &format!("reprise mock: {e}")));
                return DbStep::Close;
            }
        };
        let count = events.len();
        for (i, event) in events.into_iter().enumerate() {
            match event {
                SessionEvent::First(FirstPacket::SslRequest) if conn.tls.is_some() => {
                    // A client waits for this byte before its handshake:
                    // anything sent after the request is not its own
                    // (CVE-2021-23214), and is not answered.
                    if i + 1 != count {
                        conn.note("bytes after SSLRequest, before TLS; connection closed");
                        return DbStep::Close;
                    }
                    out.push(b'S');
                    return DbStep::StartTls;
                }
                SessionEvent::First(FirstPacket::SslRequest | FirstPacket::GssEncRequest) => {
                    out.push(b'N');
                }
                // Nothing runs long enough here to be cancelled.
                SessionEvent::First(FirstPacket::CancelRequest { .. }) => return DbStep::Close,
                SessionEvent::First(FirstPacket::Startup { .. }) => {
                    let (pid, secret) = backend_key(&conn.connection);
                    out.extend(wire::startup_ok(&server_parameters(conn), pid, secret));
                }
                SessionEvent::Password => {}
                SessionEvent::Unit(unit) => {
                    let (bytes, failed) = answer(conn, &unit, &mut self.status);
                    out.extend(bytes);
                    if failed && matches!(unit, Unit::Extended { sync: false, .. }) {
                        self.session.discard_until_sync();
                    }
                }
                SessionEvent::Terminate => return DbStep::Close,
            }
        }
        DbStep::Continue
    }
}

/// The recorded server parameters of the database's first connection,
/// else [`DEFAULT_PARAMETERS`].
fn server_parameters(conn: &DbConn) -> Vec<Header> {
    if let Some(startup) = conn.handler.store.db_startup(&conn.route.name)
        && !startup.server_parameters.is_empty()
    {
        return startup.server_parameters.clone();
    }
    DEFAULT_PARAMETERS
        .iter()
        .map(|(name, value)| Header {
            name: (*name).to_string(),
            value: value.as_bytes().to_vec(),
        })
        .collect()
}

/// A BackendKeyData for the connection: its number, and a secret that is
/// never checked (a CancelRequest only closes).
fn backend_key(connection: &str) -> (u32, u32) {
    let number = connection
        .rsplit('#')
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    let secret = u32::try_from(reprise_model::time::now_ns() & u64::from(u32::MAX)).unwrap_or(0);
    (10_000 + number, secret)
}

fn fatal(code: &str, message: &str) -> SqlError {
    SqlError {
        severity: "FATAL".to_string(),
        code: code.to_string(),
        message: message.to_string(),
        fields: Vec::new(),
    }
}

/// The bytes answering `unit`, and whether a statement failed (a miss or
/// a recorded error). Each statement is matched in turn; after a failure
/// the server skips the rest, and so does the mock (nothing more is
/// taken from the recording). `status` is the connection's transaction
/// status, as the recording says it became.
fn answer(conn: &DbConn, unit: &Unit, status: &mut u8) -> (Vec<u8>, bool) {
    let started = reprise_model::time::now_ns();
    let store = &conn.handler.store;
    let statements = match unit {
        Unit::Simple { statements, .. } | Unit::Extended { statements, .. } => statements,
        Unit::FunctionCall => {
            conn.note("a FunctionCall: a mock cannot answer it");
            return (wire::answer(unit, &[], *status), true);
        }
    };
    let scope = conn.scope();
    let parse_only = parse_only(unit);
    // What answers a statement only parsed when nothing recorded does:
    // ParseComplete, as the server would say.
    let parsed = SqlStatement::default();
    let mut first: Option<(Option<crate::scopes::ReplayKey>, u32)> = None;
    let mut results: Vec<Result<Option<DbServed<'_>>, MockMiss>> = Vec::new();
    for (i, statement) in statements.iter().enumerate() {
        let (key, order) = conn.count(scope.as_ref());
        let call = format!(
            "{}: {}{}",
            conn.route.name,
            one_line(&statement.sql),
            params_text(&statement.params)
        );
        let own = parse_only.get(i).copied().unwrap_or(false);
        let result = match store.answer_sql(
            scope.as_ref(),
            &conn.route.name,
            statement,
            call.clone(),
            !own,
        ) {
            Ok(served) => Ok(Some(served)),
            Err(_) if own => Ok(None),
            Err(miss) => Err(miss),
        };
        let failed = match &result {
            Ok(Some(served)) => {
                conn.answered(
                    key.as_ref(),
                    &call,
                    &Outcome::Served {
                        recorded: &served.exchange.id,
                        pool: served.pool,
                    },
                );
                served.statement().is_none_or(|s| s.error.is_some())
            }
            Ok(None) => {
                conn.answered(key.as_ref(), &call, &Outcome::Own);
                false
            }
            Err(_) => {
                conn.answered(key.as_ref(), &call, &Outcome::Missed);
                true
            }
        };
        first.get_or_insert((key, order));
        results.push(result);
        if failed {
            break;
        }
    }
    let misses: Vec<String> = results
        .iter()
        .map(|r| r.as_ref().err().map(miss_text).unwrap_or_default())
        .collect();
    let answers: Vec<Answer<'_>> = results
        .iter()
        .zip(&misses)
        .map(|(result, message)| match result {
            Ok(Some(served)) => Answer::Recorded(served.statement().unwrap_or(&parsed)),
            Ok(None) => Answer::Recorded(&parsed),
            Err(_) => Answer::Miss {
                sqlstate: MISS_SQLSTATE,
                message,
            },
        })
        .collect();
    let missed = results.iter().any(Result::is_err);
    let failed = missed
        || answers
            .iter()
            .any(|a| matches!(a, Answer::Recorded(s) if s.error.is_some()));
    // The status the recording ended in; after a miss, the one the
    // server would be in: a failed transaction, or idle.
    let recorded = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied().flatten())
        .next_back()
        .and_then(|s| s.transaction_status());
    *status = match (missed, recorded) {
        (true, _) if matches!(*status, b'T' | b'E') => b'E',
        (true, _) => b'I',
        (false, Some(recorded)) => recorded,
        (false, None) => *status,
    };
    let bytes = wire::answer(unit, &answers, *status);
    if conn.handler.out.is_some() {
        let (key, order) = first.unwrap_or((None, 0));
        let recorded_id = results
            .iter()
            .find_map(|r| r.as_ref().ok().copied().flatten())
            .map(|s| s.exchange.id.clone());
        let mut exchange = conn.out_exchange(
            key.as_ref(),
            order,
            Protocol::Postgres,
            recorded_id.as_deref(),
            missed,
            started,
        );
        exchange.db = Some(DbCall {
            statements: statements
                .iter()
                .zip(answers.iter().map(Some).chain(std::iter::repeat(None)))
                .map(|(asked, answer)| answered(asked, answer))
                .collect(),
            transaction_status: char::from(*status).to_string(),
            write: statements
                .iter()
                .any(|s| reprise_wire::pg::is_write(&s.sql)),
            ..Default::default()
        });
        conn.keep(exchange);
    }
    (bytes, failed)
}

/// Which of a unit's statements the client only parsed (a Parse with no
/// Bind, Describe or Execute: libpq's `PQsendPrepare`), which the mock
/// may answer by itself.
fn parse_only(unit: &Unit) -> Vec<bool> {
    let Unit::Extended {
        statements, steps, ..
    } = unit
    else {
        return Vec::new();
    };
    (0..statements.len())
        .map(|i| {
            let mut mine = steps.iter().filter(|s| s.statement() == Some(i));
            mine.clone().next().is_some() && mine.all(|s| matches!(s, Step::Parse { .. }))
        })
        .collect()
}

/// A statement as asked, with the answer it was given (none: skipped
/// after an earlier failure).
fn answered(asked: &SqlStatement, answer: Option<&Answer<'_>>) -> SqlStatement {
    let mut statement = asked.clone();
    match answer {
        Some(Answer::Recorded(recorded)) => {
            statement.columns = recorded.columns.clone();
            statement.rows = recorded.rows.clone();
            statement.command_tag = recorded.command_tag.clone();
            statement.error = recorded.error.clone();
            statement.empty = recorded.empty;
            statement.suspended = recorded.suspended;
            statement.rows_size = recorded.rows_size;
            statement.rows_truncated = recorded.rows_truncated;
            statement.described_param_types = recorded.described_param_types.clone();
        }
        Some(Answer::Miss { sqlstate, message }) => {
            statement.error = Some(SqlError {
                severity: "ERROR".to_string(),
                code: (*sqlstate).to_string(),
                message: (*message).to_string(),
                fields: Vec::new(),
            });
        }
        None => {}
    }
    statement
}

/// The ErrorResponse's message: the miss as the report shows it.
fn miss_text(miss: &crate::MockMiss) -> String {
    miss.to_string()
}
