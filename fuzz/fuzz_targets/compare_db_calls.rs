//! Database and cache calls from anything a tape may hold: SQL text,
//! parameters of any declared type, Redis arguments, and whole exchanges
//! decoded from the input, compared as recorded and made calls (answered
//! and missed). `reprise diff` must never panic on what a recording or a
//! mock's tape holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reprise_compare::{DownstreamSummary, Rules, compare_calls, describe};
use reprise_model::{
    DbCall, Exchange, Flags, Link, LinkKind, Protocol, RedisCommand, Replay, Role, SqlStatement,
    SqlValue,
};

const TYPES: [u32; 10] = [0, 16, 20, 21, 23, 700, 701, 25, 2950, 17];

fn call(id: u8, order: u32, protocol: Protocol, db: DbCall) -> Exchange {
    Exchange {
        id: vec![id; 16],
        parent_id: vec![9; 16],
        role: Role::Downstream as i32,
        protocol: protocol as i32,
        link: Some(Link {
            kind: LinkKind::Trace as i32,
            order,
        }),
        db: Some(db),
        ..Default::default()
    }
}

fn statement(sql: &[u8], param: &[u8], kind: u8) -> SqlStatement {
    SqlStatement {
        sql: String::from_utf8_lossy(sql).into_owned(),
        param_types: vec![TYPES[usize::from(kind) % TYPES.len()]],
        params: vec![SqlValue {
            data: param.to_vec(),
            binary: kind & 0x10 != 0,
            null: kind & 0x20 != 0,
        }],
        ..Default::default()
    }
}

fn made(mut e: Exchange, by: Option<u8>) -> Exchange {
    e.id = vec![e.id.first().copied().unwrap_or(0).wrapping_add(100); 16];
    e.replay = Some(Replay {
        recorded_id: by.map(|b| vec![b; 16]).unwrap_or_default(),
        ..Default::default()
    });
    e.flags = Some(Flags {
        mock_miss: by.is_none(),
        ..Default::default()
    });
    e
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let sql_a = parts.next().unwrap_or_default();
    let sql_b = parts.next().unwrap_or_default();
    let param = parts.next().unwrap_or_default();
    let args: Vec<Vec<u8>> = parts.map(<[u8]>::to_vec).collect();
    let kind = data.first().copied().unwrap_or(0);
    let pg = |sqls: &[&[u8]]| DbCall {
        statements: sqls.iter().map(|s| statement(s, param, kind)).collect(),
        ..Default::default()
    };
    let redis = DbCall {
        redis: Some(RedisCommand {
            args: args.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let recorded = vec![
        call(1, 0, Protocol::Postgres, pg(&[sql_a])),
        call(2, 1, Protocol::Redis, redis.clone()),
        call(3, 2, Protocol::Postgres, pg(&[sql_a, sql_b])),
    ];
    let mut now = vec![
        made(call(1, 0, Protocol::Postgres, pg(&[sql_b])), None),
        made(call(2, 1, Protocol::Redis, redis), Some(2)),
        made(call(3, 2, Protocol::Postgres, pg(&[sql_b, sql_a])), Some(1)),
    ];
    if let Ok(decoded) = reprise_model::decode(data) {
        now.push(made(decoded, None));
    }
    let mut rules = Rules::default();
    let _ = rules.ignore("$.params[0]");
    for rules in [Rules::default(), rules] {
        let mut summary = DownstreamSummary::default();
        for d in compare_calls(&recorded, &now, &rules, &mut summary) {
            let _ = describe(&d.path, d.kind);
        }
        let mut summary = DownstreamSummary::default();
        let _ = compare_calls(&now, &recorded, &rules, &mut summary);
    }
});
