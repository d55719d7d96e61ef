//! Any bytes, cut into client and server chunks, through a PostgreSQL
//! `Conversation` and the mock's `Session` (and the SQL readers): never a
//! panic, and the same exchanges when every chunk is fed a byte at a time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reprise_model::SqlStatement;
use reprise_wire::pg::encode::{backend as be, frontend as fe};
use reprise_wire::pg::serve::answer;
use reprise_wire::pg::{
    Answer, ChannelBindingFilter, Conversation, PgOptions, Session, SessionEvent, first_packet,
    is_write, normalize, strip_channel_binding, traceparent,
};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    // Chunks: a byte (bit 7: from the server; the rest: length), then
    // that many bytes.
    let mut chunks: Vec<(bool, Vec<u8>)> = Vec::new();
    if flags & 1 == 1 {
        // Most inputs start past a valid start-up, to reach the queries.
        let mut c = Vec::new();
        fe::startup(&mut c, &[("user", "u"), ("database", "d")]);
        let mut s = Vec::new();
        be::authentication(&mut s, 0, &[]);
        be::ready_for_query(&mut s, b'I');
        chunks.push((false, c));
        chunks.push((true, s));
    }
    let mut at = rest;
    while let Some((&head, tail)) = at.split_first() {
        let n = usize::from(head & 0x7f).min(tail.len());
        chunks.push((head & 0x80 != 0, tail[..n].to_vec()));
        at = &tail[n..];
    }
    let max_body = if flags & 2 == 2 { 64 } else { 1 << 20 };
    let opts = PgOptions {
        max_body,
        tls: flags & 4 == 4,
    };

    let mut whole = Conversation::new(opts);
    let mut bytewise = Conversation::new(opts);
    let mut session = Session::new(max_body);
    let mut filter = ChannelBindingFilter::new();
    let canned = SqlStatement {
        command_tag: "SELECT 0".into(),
        ..SqlStatement::default()
    };
    for (i, (server, bytes)) in chunks.iter().enumerate() {
        let t = i as u64;
        if *server {
            whole.server(bytes, t);
            bytes.chunks(1).for_each(|b| bytewise.server(b, t));
            let _ = filter.feed(bytes);
            let _ = strip_channel_binding(bytes);
        } else {
            whole.client(bytes, t);
            bytes.chunks(1).for_each(|b| bytewise.client(b, t));
            if let Ok(events) = session.feed(bytes) {
                for e in events {
                    if let SessionEvent::Unit(unit) = e {
                        let _ = answer(&unit, &[Answer::Recorded(&canned)], b'I');
                        let _ = answer(
                            &unit,
                            &[Answer::Miss {
                                sqlstate: "XX000",
                                message: "miss",
                            }],
                            b'E',
                        );
                    }
                }
            }
            let _ = first_packet(bytes);
        }
        let a = whole.take();
        let b = bytewise.take();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.call, y.call);
        }
        assert_eq!(whole.broken().is_some(), bytewise.broken().is_some());
    }
    let _ = whole.close(u64::MAX, None);
    let text = String::from_utf8_lossy(rest);
    let _ = normalize(&text);
    let _ = is_write(&text);
    let _ = traceparent(&text);
});
