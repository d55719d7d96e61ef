//! Redis serialization protocol, RESP2 and RESP3.
