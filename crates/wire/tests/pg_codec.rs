//! Encode-then-parse round trips of the PostgreSQL messages, and the SQL
//! readers' properties.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use proptest::prelude::*;
use reprise_model::{SqlColumn, SqlError, SqlErrorField, SqlValue};
use reprise_wire::pg::encode::{backend as be, frontend as fe};
use reprise_wire::pg::{
    Backend, FirstPacket, Frontend, backend, first_packet, frontend, normalize,
};

/// The type byte and body of the single message in `bytes`.
fn split(bytes: &[u8]) -> (u8, &[u8]) {
    let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    assert_eq!(len + 1, bytes.len(), "length field");
    (bytes[0], &bytes[5..])
}

fn no_nul() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,20}"
}

proptest! {
    #[test]
    fn data_row(values in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)), 0..20)) {
        let sql: Vec<SqlValue> = values.iter().map(|v| SqlValue { null: v.is_none(), data: v.clone().unwrap_or_default(), binary: false }).collect();
        let mut out = Vec::new();
        be::data_row(&mut out, &sql);
        let (kind, body) = split(&out);
        let Backend::DataRow(parsed) = backend(kind, body).unwrap() else { panic!("not a DataRow") };
        let parsed: Vec<Option<Vec<u8>>> = parsed.into_iter().map(|v| v.map(<[u8]>::to_vec)).collect();
        prop_assert_eq!(parsed, values);
    }

    #[test]
    fn row_description(cols in proptest::collection::vec((no_nul(), any::<u32>(), any::<u16>(), any::<u32>(), any::<i16>(), any::<i32>(), any::<bool>()), 0..10)) {
        let sql: Vec<SqlColumn> = cols.iter().map(|(name, table, num, ty, size, m, bin)| SqlColumn {
            name: name.clone(), table_oid: *table, column_number: u32::from(*num), type_oid: *ty,
            type_size: i32::from(*size), type_modifier: *m, binary: *bin,
        }).collect();
        let mut out = Vec::new();
        be::row_description(&mut out, &sql);
        let (kind, body) = split(&out);
        let Backend::RowDescription(parsed) = backend(kind, body).unwrap() else { panic!("not a RowDescription") };
        prop_assert_eq!(parsed.len(), cols.len());
        for (p, (name, table, num, ty, size, m, bin)) in parsed.iter().zip(&cols) {
            prop_assert_eq!(p.name.as_ref(), name.as_str());
            prop_assert_eq!((p.table_oid, p.column_number as u16, p.type_oid, p.type_size, p.type_modifier, p.format), (*table, *num, *ty, *size, *m, i16::from(*bin)));
        }
    }

    #[test]
    fn error_response(fields in proptest::collection::vec((1u8..=255, no_nul()), 1..8)) {
        let e = SqlError { fields: fields.iter().map(|(k, v)| SqlErrorField { kind: u32::from(*k), value: v.clone() }).collect(), ..SqlError::default() };
        let mut out = Vec::new();
        be::error(&mut out, b'E', &e);
        let (kind, body) = split(&out);
        let Backend::Error(parsed) = backend(kind, body).unwrap() else { panic!("not an ErrorResponse") };
        let parsed: Vec<(u8, String)> = parsed.into_iter().map(|(k, v)| (k, v.into_owned())).collect();
        prop_assert_eq!(parsed, fields);
    }

    #[test]
    fn parse_bind_execute(name in no_nul(), sql in no_nul(), types in proptest::collection::vec(any::<u32>(), 0..5),
                          params in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)), 0..6),
                          formats in proptest::collection::vec(0i16..=1, 0..6), max_rows in any::<u32>()) {
        let mut out = Vec::new();
        fe::parse(&mut out, &name, &sql, &types);
        let (kind, body) = split(&out);
        prop_assert_eq!(frontend(kind, body).unwrap(), Frontend::Parse { name: Cow::Borrowed(&name[..]), sql: Cow::Borrowed(&sql[..]), param_types: types.clone() });
        let refs: Vec<Option<&[u8]>> = params.iter().map(|p| p.as_deref()).collect();
        let mut out = Vec::new();
        fe::bind(&mut out, "p", &name, &formats, &refs, &formats);
        let (kind, body) = split(&out);
        prop_assert_eq!(frontend(kind, body).unwrap(), Frontend::Bind {
            portal: Cow::Borrowed("p"), statement: Cow::Borrowed(&name[..]), param_formats: formats.clone(), params: refs.clone(), result_formats: formats.clone(),
        });
        let mut out = Vec::new();
        fe::execute(&mut out, &name, max_rows);
        let (kind, body) = split(&out);
        prop_assert_eq!(frontend(kind, body).unwrap(), Frontend::Execute { portal: Cow::Borrowed(&name[..]), max_rows });
    }

    #[test]
    fn startup_parameters(params in proptest::collection::vec(("[a-z_]{1,12}", no_nul()), 0..6)) {
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut out = Vec::new();
        fe::startup(&mut out, &refs);
        let (first, used) = first_packet(&out).unwrap().unwrap();
        prop_assert_eq!(used, out.len());
        prop_assert_eq!(first, FirstPacket::Startup { version: 196_608, parameters: params.clone() });
        for cut in 0..out.len() {
            prop_assert_eq!(first_packet(&out[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn literals_never_change_the_template(n in any::<i64>(), s in "[^']{0,10}") {
        let a = normalize(&format!("SELECT * FROM t WHERE id = {} AND name = '{}'", n.unsigned_abs(), s));
        let b = normalize("select *   from t where id = 1 and name = 'x'");
        prop_assert_eq!(&a.template, &b.template);
        prop_assert_eq!(a.literals, vec![n.unsigned_abs().to_string(), format!("'{s}'")]);
    }
}

#[test]
fn every_backend_message_kind_parses() {
    let mut out = Vec::new();
    be::authentication(&mut out, 10, b"SCRAM-SHA-256\0\0");
    be::parameter_status(&mut out, "a", "b");
    be::backend_key_data(&mut out, 1, 2);
    be::ready_for_query(&mut out, b'T');
    be::command_complete(&mut out, "INSERT 0 1");
    be::parameter_description(&mut out, &[23, 25]);
    for kind in [b'1', b'2', b'3', b'n', b'I', b's'] {
        be::empty(&mut out, kind);
    }
    let mut at = 0;
    let mut kinds = Vec::new();
    while at < out.len() {
        let len = u32::from_be_bytes(out[at + 1..at + 5].try_into().unwrap()) as usize;
        let msg = backend(out[at], &out[at + 5..at + 1 + len]).unwrap();
        kinds.push(
            format!("{msg:?}")
                .split(['(', ' '])
                .next()
                .unwrap()
                .to_owned(),
        );
        at += 1 + len;
    }
    assert_eq!(
        kinds,
        [
            "Authentication",
            "ParameterStatus",
            "BackendKeyData",
            "ReadyForQuery",
            "CommandComplete",
            "ParameterDescription",
            "ParseComplete",
            "BindComplete",
            "CloseComplete",
            "NoData",
            "EmptyQuery",
            "PortalSuspended"
        ]
    );
}
