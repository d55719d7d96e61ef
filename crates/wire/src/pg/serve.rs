//! The mock's side, sans I/O: [`Session`] reads what a client sends and
//! hands over units to answer; [`startup_ok`] and [`answer`] write the
//! exact bytes a PostgreSQL server would send back.
//!
//! A mock server loop: feed the client's bytes to [`Session::feed`]; on
//! [`SessionEvent::First`] with an SSLRequest or GSSENCRequest write `N`
//! (the client then sends its StartupMessage), with a StartupMessage write
//! [`startup_ok`]; on [`SessionEvent::Unit`] look up each statement and
//! write [`answer`]; on Terminate close.

use reprise_model::{Header, SqlError, SqlStatement};

use super::batch::{Batch, Names, Step};
use super::client::{ClientEvent, ClientReader, Extended};
use super::encode::backend as enc;
use super::error::PgError;
use super::frame::HEAD_CAP;
use super::sql::split_statements;
use super::startup::FirstPacket;

/// What a client did, for the mock to answer.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// The client's start-up packet (SSLRequest, GSSENCRequest,
    /// CancelRequest or StartupMessage with its parameters).
    First(FirstPacket),
    /// A password, SASL or GSSAPI message (contents dropped).
    Password,
    /// Something to answer.
    Unit(Unit),
    /// The client is leaving.
    Terminate,
}

/// What a client asked in one go.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    /// A simple Query: its text and one statement per top-level statement
    /// in it (`sql` set).
    Simple {
        /// The query text as sent.
        sql: String,
        /// Its statements.
        statements: Vec<SqlStatement>,
    },
    /// Extended-query messages up to a Sync (`sync`) or a Flush: one
    /// statement per Execute (and per Parse or Describe not followed by
    /// one), with resolved SQL, statement and portal names, parameter
    /// types and values, `max_rows`, `described`; the steps say which
    /// message the client sent for which statement.
    Extended {
        /// The statements (the request side of [`SqlStatement`]).
        statements: Vec<SqlStatement>,
        /// The messages in order.
        steps: Vec<Step>,
        /// Ended by Sync (answer ends with ReadyForQuery) rather than
        /// Flush.
        sync: bool,
    },
    /// A FunctionCall (the fast-path interface): the mock cannot answer it.
    FunctionCall,
}

/// Reads a client connection for the mock, tracking named statements and
/// portals as the recorder does.
#[derive(Debug)]
pub struct Session {
    client: ClientReader,
    names: Names,
    batch: Option<Batch>,
    discarding: bool,
}

impl Session {
    /// A session for a new connection, keeping messages up to `max_body`
    /// bytes whole (larger ones are cut; their statements will not match).
    pub fn new(max_body: u64) -> Self {
        let limit = usize::try_from(max_body)
            .unwrap_or(usize::MAX)
            .saturating_add(HEAD_CAP)
            .min(1 << 30);
        Session {
            client: ClientReader::new(limit),
            names: Names::default(),
            batch: None,
            discarding: false,
        }
    }

    /// After answering a Flush-ended unit with an error: the server skips
    /// the client's messages until Sync, and so does the session (the
    /// Sync then comes as an empty unit, answered by ReadyForQuery alone).
    pub fn discard_until_sync(&mut self) {
        self.discarding = true;
        self.batch = None;
    }

    /// Feeds the client's bytes; the events they complete, in order. An
    /// error means the client does not speak the protocol: close.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SessionEvent>, PgError> {
        let mut events = Vec::new();
        let Session {
            client,
            names,
            batch,
            discarding,
        } = self;
        client.feed(bytes, 0, |event, _| {
            match event {
                ClientEvent::First(first) => events.push(SessionEvent::First(first)),
                ClientEvent::Password { .. } => events.push(SessionEvent::Password),
                ClientEvent::Query { sql, .. } => {
                    let statements = split_statements(&sql)
                        .into_iter()
                        .map(|sql| SqlStatement {
                            sql,
                            ..SqlStatement::default()
                        })
                        .collect();
                    events.push(SessionEvent::Unit(Unit::Simple { sql, statements }));
                }
                ClientEvent::Extended(Extended::Sync) => {
                    let b = batch.take().unwrap_or_default();
                    *discarding = false;
                    events.push(SessionEvent::Unit(Unit::Extended {
                        statements: b.statements,
                        steps: b.steps,
                        sync: true,
                    }));
                }
                ClientEvent::Extended(Extended::Flush) => {
                    if let Some(b) = batch.take().filter(|b| !b.steps.is_empty()) {
                        events.push(SessionEvent::Unit(Unit::Extended {
                            statements: b.statements,
                            steps: b.steps,
                            sync: false,
                        }));
                    }
                }
                ClientEvent::Extended(msg) => {
                    if !*discarding {
                        batch.get_or_insert_with(Batch::default).add(msg, names);
                    }
                }
                ClientEvent::FunctionCall => events.push(SessionEvent::Unit(Unit::FunctionCall)),
                ClientEvent::Copy => {}
                ClientEvent::Terminate => events.push(SessionEvent::Terminate),
            }
            Ok(())
        })?;
        Ok(events)
    }
}

/// The answer for one statement of a unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer<'a> {
    /// Answer as recorded.
    Recorded(&'a SqlStatement),
    /// Nothing recorded matches: an ErrorResponse with this SQLSTATE and
    /// message.
    Miss {
        /// SQLSTATE, e.g. "XX000".
        sqlstate: &'a str,
        /// The error's message.
        message: &'a str,
    },
}

/// AuthenticationOk, a ParameterStatus per server parameter,
/// BackendKeyData and ReadyForQuery 'I': a successful start-up.
pub fn startup_ok(server_parameters: &[Header], pid: u32, secret: u32) -> Vec<u8> {
    let mut out = Vec::new();
    enc::authentication(&mut out, 0, &[]);
    for p in server_parameters {
        enc::parameter_status(&mut out, &p.name, &String::from_utf8_lossy(&p.value));
    }
    enc::backend_key_data(&mut out, pid, secret);
    enc::ready_for_query(&mut out, b'I');
    out
}

/// The bytes answering `unit`, given one answer per statement (a missing
/// one is a miss), ending with ReadyForQuery carrying `status` (`b'I'`,
/// `b'T'`, `b'E'`) after a simple query or a Sync. After an error the
/// server skips the rest of the batch, and so does this answer.
pub fn answer(unit: &Unit, answers: &[Answer<'_>], status: u8) -> Vec<u8> {
    let mut out = Vec::new();
    match unit {
        Unit::Simple { statements, .. } => {
            for i in 0..statements.len().max(1) {
                let a = answer_of(answers, i);
                if let Some(e) = error_of(&a) {
                    enc::error(&mut out, b'E', &e);
                    break;
                }
                if let Answer::Recorded(s) = a {
                    if s.empty {
                        enc::empty(&mut out, b'I');
                        continue;
                    }
                    if !s.columns.is_empty() {
                        enc::row_description(&mut out, &s.columns);
                    }
                    rows_and_tag(&mut out, s);
                }
            }
            enc::ready_for_query(&mut out, status);
        }
        Unit::Extended { steps, sync, .. } => {
            extended(&mut out, steps, answers);
            if *sync {
                enc::ready_for_query(&mut out, status);
            }
        }
        Unit::FunctionCall => {
            let e = miss_error("0A000", "reprise mock: function calls cannot be answered");
            enc::error(&mut out, b'E', &e);
            enc::ready_for_query(&mut out, status);
        }
    }
    out
}

fn extended(out: &mut Vec<u8>, steps: &[Step], answers: &[Answer<'_>]) {
    // A statement's error is answered at its Execute, or at its last
    // message when it has none.
    let error_at = |i: usize| {
        let mine = || {
            steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.statement() == Some(i))
        };
        mine()
            .filter(|(_, s)| matches!(s, Step::Execute { .. }))
            .map(|(k, _)| k)
            .next()
            .or_else(|| mine().map(|(k, _)| k).next_back())
    };
    for (k, step) in steps.iter().enumerate() {
        let Some(i) = step.statement() else {
            enc::empty(out, b'3');
            continue;
        };
        let a = answer_of(answers, i);
        if error_at(i) == Some(k)
            && let Some(e) = error_of(&a)
        {
            enc::error(out, b'E', &e);
            return;
        }
        let recorded = match a {
            Answer::Recorded(s) => Some(s),
            Answer::Miss { .. } => None,
        };
        match *step {
            Step::Parse { .. } => enc::empty(out, b'1'),
            Step::Bind { .. } => enc::empty(out, b'2'),
            Step::Describe { target, .. } => {
                let s = recorded.cloned().unwrap_or_default();
                if target == b'S' {
                    let types = if s.described_param_types.is_empty() {
                        &s.param_types
                    } else {
                        &s.described_param_types
                    };
                    enc::parameter_description(out, types);
                }
                if s.columns.is_empty() {
                    enc::empty(out, b'n');
                } else if target == b'S' {
                    // A statement's description has no formats yet.
                    let text: Vec<_> = s
                        .columns
                        .iter()
                        .map(|c| reprise_model::SqlColumn {
                            binary: false,
                            ..c.clone()
                        })
                        .collect();
                    enc::row_description(out, &text);
                } else {
                    enc::row_description(out, &s.columns);
                }
            }
            Step::Execute { .. } => {
                if let Some(s) = recorded {
                    if s.empty {
                        enc::empty(out, b'I');
                    } else {
                        rows_and_tag(out, s);
                    }
                }
            }
            Step::Close { .. } => enc::empty(out, b'3'),
        }
    }
}

fn rows_and_tag(out: &mut Vec<u8>, s: &SqlStatement) {
    for row in &s.rows {
        enc::data_row(out, &row.values);
    }
    if s.suspended {
        enc::empty(out, b's');
    } else {
        enc::command_complete(out, &s.command_tag);
    }
}

fn answer_of<'a>(answers: &[Answer<'a>], i: usize) -> Answer<'a> {
    answers.get(i).copied().unwrap_or(Answer::Miss {
        sqlstate: "XX000",
        message: "reprise mock: no answer for this statement",
    })
}

fn error_of(a: &Answer<'_>) -> Option<SqlError> {
    match a {
        Answer::Recorded(s) => s.error.clone(),
        Answer::Miss { sqlstate, message } => Some(miss_error(sqlstate, message)),
    }
}

fn miss_error(sqlstate: &str, message: &str) -> SqlError {
    SqlError {
        severity: "ERROR".to_owned(),
        code: sqlstate.to_owned(),
        message: message.to_owned(),
        fields: Vec::new(),
    }
}
