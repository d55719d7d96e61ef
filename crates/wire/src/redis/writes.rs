//! Which commands change state: `reprise diff` compares them as writes.

/// Commands that change the data set (or, for PUBLISH, reach other
/// clients), by upper-case name. Scripts and functions count as writes
/// (conservatively: they may write); their read-only variants do not.
const WRITES: &[&str] = &[
    // strings
    "SET",
    "SETEX",
    "PSETEX",
    "SETNX",
    "SETRANGE",
    "GETSET",
    "GETDEL",
    "GETEX",
    "MSET",
    "MSETNX",
    "APPEND",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "DECR",
    "DECRBY",
    "SETBIT",
    "BITFIELD",
    "BITOP",
    // keys
    "DEL",
    "UNLINK",
    "EXPIRE",
    "EXPIREAT",
    "PEXPIRE",
    "PEXPIREAT",
    "PERSIST",
    "RENAME",
    "RENAMENX",
    "COPY",
    "MOVE",
    "RESTORE",
    "MIGRATE",
    "FLUSHDB",
    "FLUSHALL",
    "SWAPDB",
    // lists
    "LPUSH",
    "LPUSHX",
    "RPUSH",
    "RPUSHX",
    "LPOP",
    "RPOP",
    "LSET",
    "LREM",
    "LINSERT",
    "LTRIM",
    "LMOVE",
    "BLMOVE",
    "RPOPLPUSH",
    "BRPOPLPUSH",
    "BLPOP",
    "BRPOP",
    "LMPOP",
    "BLMPOP",
    // sets
    "SADD",
    "SREM",
    "SPOP",
    "SMOVE",
    "SINTERSTORE",
    "SUNIONSTORE",
    "SDIFFSTORE",
    // sorted sets
    "ZADD",
    "ZINCRBY",
    "ZREM",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYLEX",
    "ZPOPMIN",
    "ZPOPMAX",
    "BZPOPMIN",
    "BZPOPMAX",
    "ZMPOP",
    "BZMPOP",
    "ZUNIONSTORE",
    "ZINTERSTORE",
    "ZDIFFSTORE",
    "ZRANGESTORE",
    "GEOADD",
    "GEOSEARCHSTORE",
    // hashes
    "HSET",
    "HSETNX",
    "HMSET",
    "HDEL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HEXPIRE",
    "HPEXPIRE",
    "HEXPIREAT",
    "HPEXPIREAT",
    "HPERSIST",
    "HGETDEL",
    "HGETEX",
    "HSETEX",
    // streams (XREADGROUP adds to the pending entries list)
    "XADD",
    "XDEL",
    "XTRIM",
    "XGROUP",
    "XACK",
    "XCLAIM",
    "XAUTOCLAIM",
    "XSETID",
    "XREADGROUP",
    // HyperLogLog
    "PFADD",
    "PFMERGE",
    // scripts and functions
    "EVAL",
    "EVALSHA",
    "FCALL",
    // messages
    "PUBLISH",
    "SPUBLISH",
];

/// Commands that write only with a `STORE` (or `STOREDIST`) argument.
const WRITES_WITH_STORE: &[&str] = &["SORT", "GEORADIUS", "GEORADIUSBYMEMBER"];

/// The command changes state. `name` in any case; `args` are the command's
/// arguments after it.
pub fn is_write(name: &[u8], args: &[Vec<u8>]) -> bool {
    let upper = name.to_ascii_uppercase();
    let named = |list: &[&str]| list.iter().any(|w| w.as_bytes() == upper.as_slice());
    if named(WRITES) {
        return true;
    }
    if named(WRITES_WITH_STORE) {
        return args
            .iter()
            .any(|a| a.eq_ignore_ascii_case(b"STORE") || a.eq_ignore_ascii_case(b"STOREDIST"));
    }
    upper == b"FUNCTION"
        && args.first().is_some_and(|sub| {
            [&b"LOAD"[..], b"DELETE", b"FLUSH", b"RESTORE"]
                .iter()
                .any(|w| sub.eq_ignore_ascii_case(w))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn writes_by_name_any_case() {
        assert!(is_write(b"set", &args(&["k", "v"])));
        assert!(is_write(b"HINCRBY", &args(&["h", "f", "1"])));
        assert!(is_write(b"evalsha", &args(&["abc", "0"])));
        assert!(!is_write(b"GET", &args(&["k"])));
        assert!(!is_write(b"EVAL_RO", &args(&["return 1", "0"])));
        assert!(!is_write(b"PING", &[]));
    }

    #[test]
    fn writes_by_argument() {
        assert!(is_write(b"SORT", &args(&["l", "store", "d"])));
        assert!(!is_write(b"SORT", &args(&["l"])));
        assert!(is_write(b"FUNCTION", &args(&["load", "code"])));
        assert!(!is_write(b"FUNCTION", &args(&["LIST"])));
    }
}
