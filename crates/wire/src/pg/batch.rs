//! Extended-query batches: named statements and portals tracked per
//! connection, and the grouping of Parse, Bind, Describe, Execute and Close
//! messages into statements. The recorder and the mock both use it, so a
//! recorded statement and the one the mock looks up are cut alike.

use std::collections::HashMap;

use reprise_model::{SqlStatement, SqlValue};

use super::client::Extended;

/// At most this many named statements or portals are remembered per
/// connection (a client leaking them would otherwise grow memory without
/// bound); beyond it, new names resolve to no SQL.
const MAX_NAMES: usize = 10_000;
/// At most this many messages are kept per batch (a pipeline that never
/// syncs would otherwise grow memory without bound); beyond it they only
/// update the connection's names.
pub(crate) const MAX_STEPS: usize = 10_000;

/// What one message of a batch asks for, pointing at its statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Parse (answered by ParseComplete).
    Parse {
        /// Index in the batch's statements.
        statement: usize,
    },
    /// Bind (BindComplete).
    Bind {
        /// Index in the batch's statements.
        statement: usize,
    },
    /// Describe of a statement (`b'S'`: ParameterDescription, then
    /// RowDescription or NoData) or a portal (`b'P'`).
    Describe {
        /// `b'S'` or `b'P'`.
        target: u8,
        /// Index in the batch's statements.
        statement: usize,
    },
    /// Execute (rows, then CommandComplete, EmptyQueryResponse,
    /// PortalSuspended or ErrorResponse).
    Execute {
        /// Index in the batch's statements.
        statement: usize,
        /// Row limit (0: none).
        max_rows: u32,
    },
    /// Close of a statement or portal (CloseComplete).
    Close {
        /// `b'S'` or `b'P'`.
        target: u8,
    },
}

impl Step {
    /// The statement the step belongs to, if any.
    pub fn statement(&self) -> Option<usize> {
        match *self {
            Step::Parse { statement }
            | Step::Bind { statement }
            | Step::Describe { statement, .. }
            | Step::Execute { statement, .. } => Some(statement),
            Step::Close { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Prepared {
    sql: String,
    param_types: Vec<u32>,
}

#[derive(Debug, Clone, Default)]
struct Portal {
    statement_name: String,
    sql: String,
    param_types: Vec<u32>,
    params: Vec<SqlValue>,
    result_formats: Vec<i16>,
}

/// The named statements and portals a connection has made.
#[derive(Debug, Default)]
pub(crate) struct Names {
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
}

impl Names {
    fn statement(&self, name: &str) -> Prepared {
        self.statements.get(name).cloned().unwrap_or_default()
    }

    fn portal(&self, name: &str) -> Portal {
        self.portals.get(name).cloned().unwrap_or_default()
    }
}

/// A batch being read: its statements (what the client asked) and steps.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub statements: Vec<SqlStatement>,
    pub steps: Vec<Step>,
    /// Bind's result format codes, per statement (to tell which columns
    /// come back binary).
    pub result_formats: Vec<Vec<i16>>,
    /// A message was larger than the size cap: SQL or parameters are cut.
    pub cut: bool,
    /// More than [`MAX_STEPS`] messages: the rest were not kept.
    pub overflow: bool,
    /// Statements of this batch parsed and not yet bound, by name.
    parsed: HashMap<String, usize>,
    /// Portals of this batch bound and not yet executed, by name.
    bound: HashMap<String, usize>,
}

impl Batch {
    fn push(&mut self, s: SqlStatement, result_formats: Vec<i16>) -> usize {
        self.statements.push(s);
        self.result_formats.push(result_formats);
        self.statements.len() - 1
    }

    /// Adds one message (not Sync or Flush), resolving names through and
    /// updating `names`.
    pub(crate) fn add(&mut self, msg: Extended, names: &mut Names) {
        if self.steps.len() >= MAX_STEPS {
            self.overflow = true;
            // Keep the connection's names right for the batches to come.
            let mut scratch = Batch::default();
            scratch.add(msg, names);
            return;
        }
        match msg {
            Extended::Parse {
                name,
                sql,
                param_types,
                cut,
            } => {
                self.cut |= cut;
                if names.statements.len() < MAX_NAMES || names.statements.contains_key(&name) {
                    names.statements.insert(
                        name.clone(),
                        Prepared {
                            sql: sql.clone(),
                            param_types: param_types.clone(),
                        },
                    );
                }
                let i = self.push(
                    SqlStatement {
                        sql,
                        statement_name: name.clone(),
                        param_types,
                        extended: true,
                        ..SqlStatement::default()
                    },
                    Vec::new(),
                );
                self.parsed.insert(name, i);
                self.steps.push(Step::Parse { statement: i });
            }
            Extended::Bind {
                portal,
                statement,
                param_formats,
                params,
                result_formats,
                cut,
            } => {
                self.cut |= cut;
                let prepared = names.statement(&statement);
                let values: Vec<SqlValue> = params
                    .into_iter()
                    .enumerate()
                    .map(|(n, p)| SqlValue {
                        null: p.is_none(),
                        data: p.unwrap_or_default(),
                        binary: format_of(&param_formats, n) == 1,
                    })
                    .collect();
                let i = match self.parsed.remove(&statement) {
                    Some(i) => i,
                    None => self.push(
                        SqlStatement {
                            sql: prepared.sql.clone(),
                            statement_name: statement.clone(),
                            param_types: prepared.param_types.clone(),
                            extended: true,
                            ..SqlStatement::default()
                        },
                        Vec::new(),
                    ),
                };
                if let Some(s) = self.statements.get_mut(i) {
                    s.portal.clone_from(&portal);
                    s.params.clone_from(&values);
                }
                if let Some(f) = self.result_formats.get_mut(i) {
                    f.clone_from(&result_formats);
                }
                if names.portals.len() < MAX_NAMES || names.portals.contains_key(&portal) {
                    names.portals.insert(
                        portal.clone(),
                        Portal {
                            statement_name: statement,
                            sql: prepared.sql,
                            param_types: prepared.param_types,
                            params: values,
                            result_formats,
                        },
                    );
                }
                self.bound.insert(portal, i);
                self.steps.push(Step::Bind { statement: i });
            }
            Extended::Describe { target, name } => {
                let known = if target == b'S' {
                    self.parsed.get(&name)
                } else {
                    self.bound.get(&name)
                };
                let i = match known {
                    Some(&i) => i,
                    None => self.earlier(target, &name, names),
                };
                if let Some(s) = self.statements.get_mut(i) {
                    s.described = true;
                }
                self.steps.push(Step::Describe {
                    target,
                    statement: i,
                });
            }
            Extended::Execute { portal, max_rows } => {
                // A second Execute of a portal (after PortalSuspended) is a
                // statement of its own: it answers with other rows.
                let i = match self.bound.remove(&portal) {
                    Some(i) => i,
                    None => self.earlier(b'P', &portal, names),
                };
                if let Some(s) = self.statements.get_mut(i) {
                    s.max_rows = max_rows;
                }
                self.steps.push(Step::Execute {
                    statement: i,
                    max_rows,
                });
            }
            Extended::Close { target, name } => {
                if target == b'S' {
                    names.statements.remove(&name);
                    self.parsed.remove(&name);
                } else {
                    names.portals.remove(&name);
                    self.bound.remove(&name);
                }
                self.steps.push(Step::Close { target });
            }
            Extended::Sync | Extended::Flush => {}
        }
    }

    /// A statement for a statement or portal made in an earlier batch.
    fn earlier(&mut self, target: u8, name: &str, names: &Names) -> usize {
        if target == b'S' {
            let p = names.statement(name);
            self.push(
                SqlStatement {
                    sql: p.sql,
                    statement_name: name.to_owned(),
                    param_types: p.param_types,
                    extended: true,
                    ..SqlStatement::default()
                },
                Vec::new(),
            )
        } else {
            let p = names.portal(name);
            self.push(
                SqlStatement {
                    sql: p.sql,
                    statement_name: p.statement_name,
                    portal: name.to_owned(),
                    param_types: p.param_types,
                    params: p.params,
                    extended: true,
                    ..SqlStatement::default()
                },
                p.result_formats,
            )
        }
    }
}

/// The format code for item `n` given a list of codes (none: all text;
/// one: for all).
pub(crate) fn format_of(codes: &[i16], n: usize) -> i16 {
    match codes {
        [] => 0,
        [one] => *one,
        many => many.get(n).copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, sql: &str) -> Extended {
        Extended::Parse {
            name: name.into(),
            sql: sql.into(),
            param_types: vec![23],
            cut: false,
        }
    }

    fn bind(portal: &str, statement: &str, v: &[u8]) -> Extended {
        Extended::Bind {
            portal: portal.into(),
            statement: statement.into(),
            param_formats: vec![],
            params: vec![Some(v.to_vec()), None],
            result_formats: vec![1],
            cut: false,
        }
    }

    #[test]
    fn parse_bind_describe_execute_is_one_statement() {
        let mut names = Names::default();
        let mut b = Batch::default();
        b.add(parse("", "select $1"), &mut names);
        b.add(bind("", "", b"7"), &mut names);
        b.add(
            Extended::Describe {
                target: b'P',
                name: "".into(),
            },
            &mut names,
        );
        b.add(
            Extended::Execute {
                portal: "".into(),
                max_rows: 0,
            },
            &mut names,
        );
        assert_eq!(b.statements.len(), 1);
        let s = &b.statements[0];
        assert_eq!(
            (s.sql.as_str(), s.described, s.params.len()),
            ("select $1", true, 2)
        );
        assert!(s.params[1].null);
        assert_eq!(b.result_formats[0], vec![1]);
        assert_eq!(b.steps.len(), 4);
    }

    #[test]
    fn a_batch_keeps_at_most_max_steps_but_names_stay_right() {
        let mut names = Names::default();
        let mut b = Batch::default();
        for _ in 0..MAX_STEPS {
            b.add(
                Extended::Execute {
                    portal: "".into(),
                    max_rows: 0,
                },
                &mut names,
            );
        }
        assert!(!b.overflow);
        b.add(parse("late", "select 2"), &mut names);
        assert!(b.overflow);
        assert_eq!(b.steps.len(), MAX_STEPS);
        let mut next = Batch::default();
        next.add(bind("", "late", b"1"), &mut names);
        assert_eq!(next.statements[0].sql, "select 2");
    }

    #[test]
    fn named_statement_resolves_in_a_later_batch_until_closed() {
        let mut names = Names::default();
        let mut b = Batch::default();
        b.add(parse("s1", "select 1 where $1"), &mut names);
        b.add(
            Extended::Describe {
                target: b'S',
                name: "s1".into(),
            },
            &mut names,
        );
        assert_eq!(b.statements.len(), 1);
        let mut b2 = Batch::default();
        b2.add(bind("", "s1", b"t"), &mut names);
        b2.add(
            Extended::Execute {
                portal: "".into(),
                max_rows: 5,
            },
            &mut names,
        );
        b2.add(
            Extended::Execute {
                portal: "".into(),
                max_rows: 5,
            },
            &mut names,
        );
        assert_eq!(b2.statements.len(), 2);
        assert_eq!(b2.statements[1].sql, "select 1 where $1");
        assert_eq!(b2.statements[1].params, b2.statements[0].params);
        b2.add(
            Extended::Close {
                target: b'S',
                name: "s1".into(),
            },
            &mut names,
        );
        let mut b3 = Batch::default();
        b3.add(bind("", "s1", b"t"), &mut names);
        assert_eq!(b3.statements[0].sql, "");
    }
}
