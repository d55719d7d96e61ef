//! An exchange being cut: what the client asked, filled in with the
//! server's answer message by message.

use reprise_model::{
    DbCall, Header, SqlColumn, SqlError, SqlErrorField, SqlRow, SqlStartup, SqlStatement, SqlValue,
};

use super::batch::{Batch, Step, format_of};
use super::messages::{Backend, Column};
use super::sql::{is_write, split_statements, traceparent};
use crate::DbExchange;

/// Notices kept per exchange (a loop of RAISE NOTICE could send millions).
const MAX_NOTICES: usize = 100;
/// Results kept per simple query (one per statement of its text).
const MAX_RESULTS: usize = super::batch::MAX_STEPS;

/// One request waiting for (or receiving) its answer.
#[derive(Debug)]
pub(crate) struct Draft {
    pub started_ns: u64,
    pub kind: Kind,
    pub notices: Vec<SqlError>,
    pub not_mockable: Option<String>,
    /// Some server message for it has been read.
    pub answered: bool,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Startup(StartupDraft),
    Simple(SimpleDraft),
    Batch(BatchDraft),
    /// A FunctionCall: never mockable, answered by FunctionCallResponse.
    Function,
}

#[derive(Debug, Default)]
pub(crate) struct StartupDraft {
    pub startup: SqlStartup,
    /// The first authentication request that was not AuthenticationOk.
    pub auth_code: Option<i32>,
    pub sasl_offered: Vec<String>,
    pub sasl_chosen: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct SimpleDraft {
    pub sql: String,
    pub statements: Vec<SqlStatement>,
    pub current: Option<SqlStatement>,
    /// More results than are kept.
    pub overflow: bool,
}

#[derive(Debug, Default)]
pub(crate) struct BatchDraft {
    pub batch: Batch,
    /// The first step whose answer has not been read completely.
    pub cursor: usize,
    /// An ErrorResponse came: the server skips to Sync.
    pub failed: bool,
    pub synced: bool,
}

/// What a server message did to the draft at the front.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Continue,
    /// The exchange is complete (ReadyForQuery, or a start-up's error).
    Done,
}

impl Draft {
    pub(crate) fn new(started_ns: u64, kind: Kind) -> Self {
        Draft {
            started_ns,
            kind,
            notices: Vec::new(),
            not_mockable: None,
            answered: false,
        }
    }

    fn refuse(&mut self, why: &str) {
        if self.not_mockable.is_none() {
            self.not_mockable = Some(why.to_owned());
        }
    }

    /// Applies one server message; `len` is its full size on the wire.
    pub(crate) fn apply(&mut self, msg: Backend<'_>, len: u64, max_body: u64) -> Outcome {
        self.answered = true;
        if let Backend::Notice(fields) = &msg {
            if self.notices.len() < MAX_NOTICES {
                self.notices.push(sql_error(fields));
            }
            return Outcome::Continue;
        }
        if matches!(msg, Backend::CopyResponse(_)) {
            self.refuse("COPY");
        }
        let mut refusal = None;
        let outcome = match &mut self.kind {
            Kind::Startup(s) => s.apply(msg),
            Kind::Simple(s) => s.apply(msg, len, max_body, &mut refusal),
            Kind::Batch(b) => b.apply(msg, len, max_body, &mut refusal),
            Kind::Function => match msg {
                Backend::ReadyForQuery(_) => Outcome::Done,
                _ => Outcome::Continue,
            },
        };
        if let Kind::Simple(SimpleDraft { overflow: true, .. }) = self.kind {
            refusal = Some("more results than are kept");
        }
        if let Some(why) = refusal {
            self.refuse(why);
        }
        outcome
    }

    /// A DataRow larger than the size cap: counted, not kept.
    pub(crate) fn oversized_row(&mut self, len: u64) {
        self.answered = true;
        let stmt = match &mut self.kind {
            Kind::Simple(s) => Some(s.current.get_or_insert_with(SqlStatement::default)),
            Kind::Batch(b) => b.execute_at_cursor(),
            _ => None,
        };
        if let Some(stmt) = stmt {
            stmt.rows_size += len;
            stmt.rows_truncated = true;
        }
        self.refuse("rows beyond the size cap");
    }

    /// The exchange, complete (`incomplete` = None) or cut short.
    pub(crate) fn finish(
        self,
        ended_ns: u64,
        status: Option<u8>,
        incomplete: Option<String>,
    ) -> DbExchange {
        let mut call = DbCall {
            transaction_status: status
                .map(|s| char::from(s).to_string())
                .unwrap_or_default(),
            notices: self.notices,
            ..DbCall::default()
        };
        let mut not_mockable = self.not_mockable;
        match self.kind {
            Kind::Startup(s) => call.startup = Some(s.finish()),
            Kind::Simple(s) => call.statements = s.finish(),
            Kind::Batch(b) => call.statements = b.batch.statements,
            Kind::Function => not_mockable = Some("function call".to_owned()),
        }
        if incomplete.is_some() && not_mockable.is_none() {
            not_mockable = Some("incomplete".to_owned());
        }
        call.not_mockable = not_mockable.unwrap_or_default();
        call.write = call.statements.iter().any(|s| is_write(&s.sql));
        let traceparent = call.statements.iter().find_map(|s| traceparent(&s.sql));
        DbExchange {
            call,
            started_ns: self.started_ns,
            ended_ns,
            traceparent,
            incomplete,
        }
    }
}

impl StartupDraft {
    fn apply(&mut self, msg: Backend<'_>) -> Outcome {
        match msg {
            Backend::Authentication { code, data } => {
                if code != 0 && self.auth_code.is_none() {
                    self.auth_code = Some(code);
                }
                if code == 10 {
                    self.sasl_offered = data
                        .split(|&b| b == 0)
                        .filter(|m| !m.is_empty())
                        .map(|m| String::from_utf8_lossy(m).into_owned())
                        .collect();
                }
            }
            Backend::ParameterStatus { name, value } => {
                self.startup.server_parameters.push(Header {
                    name: name.into_owned(),
                    value: value.into_owned().into_bytes(),
                })
            }
            Backend::BackendKeyData { pid } => self.startup.backend_pid = pid,
            Backend::Error(fields) => {
                self.startup.error = Some(sql_error(&fields));
                return Outcome::Done;
            }
            Backend::ReadyForQuery(_) => return Outcome::Done,
            _ => {}
        }
        Outcome::Continue
    }

    fn finish(mut self) -> SqlStartup {
        self.startup.authentication = match self.auth_code {
            None => "trust".to_owned(),
            Some(3) => "cleartext".to_owned(),
            Some(5) => "md5".to_owned(),
            Some(7) => "gss".to_owned(),
            Some(9) => "sspi".to_owned(),
            Some(10) => self
                .sasl_chosen
                .or_else(|| {
                    self.sasl_offered
                        .iter()
                        .find(|m| !m.ends_with("-PLUS"))
                        .cloned()
                })
                .unwrap_or_else(|| "SASL".to_owned()),
            Some(n) => format!("authentication request {n}"),
        };
        self.startup
    }
}

impl SimpleDraft {
    fn current(&mut self) -> &mut SqlStatement {
        self.current.get_or_insert_with(SqlStatement::default)
    }

    fn end_current(&mut self) {
        let s = self.current.take().unwrap_or_default();
        if self.statements.len() < MAX_RESULTS {
            self.statements.push(s);
        } else {
            self.overflow = true;
        }
    }

    fn apply(
        &mut self,
        msg: Backend<'_>,
        len: u64,
        max_body: u64,
        refusal: &mut Option<&'static str>,
    ) -> Outcome {
        match msg {
            Backend::RowDescription(cols) => {
                self.current().columns = columns(&cols, |c, _| c.format == 1);
            }
            Backend::DataRow(values) => {
                let s = self.current();
                let binary: Vec<bool> = s.columns.iter().map(|c| c.binary).collect();
                add_row(s, &values, &binary, len, max_body, refusal);
            }
            Backend::CommandComplete(tag) => {
                self.current().command_tag = tag.into_owned();
                self.end_current();
            }
            Backend::EmptyQuery => {
                self.current().empty = true;
                self.end_current();
            }
            Backend::Error(fields) => {
                self.current().error = Some(sql_error(&fields));
                self.end_current();
            }
            Backend::CopyResponse(_) => self.current().copy = true,
            Backend::ReadyForQuery(_) => return Outcome::Done,
            _ => {}
        }
        Outcome::Continue
    }

    /// The statements with their SQL: the query's text split at top-level
    /// semicolons, one piece per result, when there are at least as many
    /// pieces as results (an error stops the rest); else the whole text on
    /// the first.
    fn finish(mut self) -> Vec<SqlStatement> {
        if let Some(s) = self.current.take() {
            self.statements.push(s);
        }
        if self.statements.is_empty() {
            self.statements.push(SqlStatement::default());
        }
        let pieces = split_statements(&self.sql);
        if self.statements.len() <= pieces.len() {
            for (s, piece) in self.statements.iter_mut().zip(pieces) {
                s.sql = piece;
            }
        } else if let Some(first) = self.statements.first_mut() {
            first.sql = self.sql;
        }
        self.statements
    }
}

impl BatchDraft {
    /// The first step at or after the cursor that `want` accepts.
    fn find(&self, want: impl Fn(&Step) -> bool) -> Option<(usize, Step)> {
        let steps = self.batch.steps.get(self.cursor..)?;
        let at = steps.iter().position(want)?;
        steps.get(at).map(|s| (self.cursor + at, *s))
    }

    fn execute_at_cursor(&mut self) -> Option<&mut SqlStatement> {
        let (at, step) = self.find(|s| matches!(s, Step::Execute { .. }))?;
        self.cursor = at;
        self.batch.statements.get_mut(step.statement()?)
    }

    fn apply(
        &mut self,
        msg: Backend<'_>,
        len: u64,
        max_body: u64,
        refusal: &mut Option<&'static str>,
    ) -> Outcome {
        if let Backend::ReadyForQuery(_) = msg {
            return Outcome::Done;
        }
        if self.failed {
            return Outcome::Continue;
        }
        let is = |kind: u8| move |s: &Step| step_kind(s) == kind;
        match msg {
            Backend::ParseComplete => self.advance(is(b'P')),
            Backend::BindComplete => self.advance(is(b'B')),
            Backend::CloseComplete => self.advance(is(b'C')),
            Backend::ParameterDescription(types) => {
                if let Some((at, step)) = self.find(is(b'D')) {
                    self.cursor = at;
                    if let Some(s) = step
                        .statement()
                        .and_then(|i| self.batch.statements.get_mut(i))
                    {
                        s.described_param_types = types;
                    }
                }
            }
            Backend::RowDescription(_) | Backend::NoData => {
                if let Some((at, Step::Describe { target, statement })) = self.find(is(b'D')) {
                    self.cursor = at + 1;
                    let formats = self
                        .batch
                        .result_formats
                        .get(statement)
                        .cloned()
                        .unwrap_or_default();
                    if let (Some(s), Backend::RowDescription(cols)) =
                        (self.batch.statements.get_mut(statement), msg)
                    {
                        // A portal's description carries the real formats;
                        // a statement's says 0 until Bind chooses.
                        s.columns = columns(&cols, |c, n| {
                            if target == b'P' {
                                c.format == 1
                            } else {
                                format_of(&formats, n) == 1
                            }
                        });
                    }
                }
            }
            Backend::DataRow(values) => {
                if let Some((at, Step::Execute { statement: i, .. })) = self.find(is(b'E')) {
                    self.cursor = at;
                    let formats = self
                        .batch
                        .result_formats
                        .get(i)
                        .map_or(&[][..], Vec::as_slice);
                    let Some(s) = self.batch.statements.get_mut(i) else {
                        return Outcome::Continue;
                    };
                    // Without a Describe in the batch (the client kept the
                    // description), the Bind's result formats say which
                    // values are binary.
                    let binary: Vec<bool> = if s.columns.is_empty() {
                        (0..values.len())
                            .map(|n| format_of(formats, n) == 1)
                            .collect()
                    } else {
                        s.columns.iter().map(|c| c.binary).collect()
                    };
                    add_row(s, &values, &binary, len, max_body, refusal);
                }
            }
            Backend::CopyResponse(_) => {
                if let Some(s) = self.execute_at_cursor() {
                    s.copy = true;
                }
            }
            Backend::CommandComplete(_) | Backend::EmptyQuery | Backend::PortalSuspended => {
                if let Some(s) = self.execute_at_cursor() {
                    match msg {
                        Backend::CommandComplete(tag) => s.command_tag = tag.into_owned(),
                        Backend::EmptyQuery => s.empty = true,
                        _ => s.suspended = true,
                    }
                    self.cursor += 1;
                }
            }
            Backend::Error(fields) => {
                let error = Some(sql_error(&fields));
                let at = self.batch.steps.get(self.cursor).and_then(Step::statement);
                let at = at.or_else(|| {
                    let before = self.batch.steps.get(..self.cursor)?;
                    before.iter().rev().find_map(Step::statement)
                });
                match at.and_then(|i| self.batch.statements.get_mut(i)) {
                    Some(s) => s.error = error,
                    None => self.batch.statements.push(SqlStatement {
                        error,
                        extended: true,
                        ..SqlStatement::default()
                    }),
                }
                self.failed = true;
                self.cursor = self.batch.steps.len();
            }
            _ => {}
        }
        Outcome::Continue
    }

    fn advance(&mut self, want: impl Fn(&Step) -> bool) {
        if let Some((at, _)) = self.find(want) {
            self.cursor = at + 1;
        }
    }
}

fn step_kind(s: &Step) -> u8 {
    match s {
        Step::Parse { .. } => b'P',
        Step::Bind { .. } => b'B',
        Step::Describe { .. } => b'D',
        Step::Execute { .. } => b'E',
        Step::Close { .. } => b'C',
    }
}

fn columns(cols: &[Column<'_>], binary: impl Fn(&Column<'_>, usize) -> bool) -> Vec<SqlColumn> {
    cols.iter()
        .enumerate()
        .map(|(n, c)| SqlColumn {
            name: c.name.to_string(),
            table_oid: c.table_oid,
            column_number: u32::from(c.column_number as u16),
            type_oid: c.type_oid,
            type_size: i32::from(c.type_size),
            type_modifier: c.type_modifier,
            binary: binary(c, n),
        })
        .collect()
}

/// Counts a row and keeps it while the statement's rows fit in
/// `max_body` bytes.
fn add_row(
    s: &mut SqlStatement,
    values: &[Option<&[u8]>],
    binary: &[bool],
    len: u64,
    max_body: u64,
    refusal: &mut Option<&'static str>,
) {
    s.rows_size += len;
    if s.rows_size > max_body {
        s.rows_truncated = true;
        *refusal = Some("rows beyond the size cap");
        return;
    }
    s.rows.push(SqlRow {
        values: values
            .iter()
            .enumerate()
            .map(|(n, v)| SqlValue {
                null: v.is_none(),
                data: v.map(<[u8]>::to_vec).unwrap_or_default(),
                binary: binary.get(n).copied().unwrap_or(false),
            })
            .collect(),
    });
}

/// An ErrorResponse's or NoticeResponse's fields as the model keeps them.
pub(crate) fn sql_error(fields: &[(u8, std::borrow::Cow<'_, str>)]) -> SqlError {
    let get = |k: u8| {
        fields
            .iter()
            .find(|(c, _)| *c == k)
            .map(|(_, v)| v.to_string())
    };
    SqlError {
        severity: get(b'V').or_else(|| get(b'S')).unwrap_or_default(),
        code: get(b'C').unwrap_or_default(),
        message: get(b'M').unwrap_or_default(),
        fields: fields
            .iter()
            .map(|(k, v)| SqlErrorField {
                kind: u32::from(*k),
                value: v.to_string(),
            })
            .collect(),
    }
}
