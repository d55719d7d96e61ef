//! Header fields as an [`http::HeaderMap`]: the one conversion from the
//! fields a recording holds or a parser found to the map hyper and the
//! HTTP/1.1 code send.

use http::{HeaderMap, HeaderName, HeaderValue};

/// `fields` (name, value) as a header map, in their order. Pseudo-headers
/// (HAR files of HTTP/2 calls list `:authority` and friends) and fields
/// that are not valid HTTP are left out.
pub fn header_map<'a, I>(fields: I) -> HeaderMap
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    I::IntoIter: ExactSizeIterator,
{
    let fields = fields.into_iter();
    let mut map = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        if name.first() == Some(&b':') {
            continue;
        }
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

/// Recorded fields as a header map (see [`header_map`]).
pub fn recorded(fields: &[reprise_model::Header]) -> HeaderMap {
    header_map(fields.iter().map(|f| (f.name.as_bytes(), &f.value[..])))
}

/// Fields `httparse` found, as a header map (see [`header_map`]).
pub fn parsed(fields: &[httparse::Header<'_>]) -> HeaderMap {
    header_map(fields.iter().map(|f| (f.name.as_bytes(), f.value)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reprise_model::Header;

    #[test]
    fn pseudo_headers_and_invalid_fields_are_left_out_order_kept() {
        let fields = vec![
            Header::new(":authority", "example.com"),
            Header::new("set-cookie", "a=1"),
            Header::new("bad name", "x"),
            Header::new("x-bad-value", b"a\nb"),
            Header::new("set-cookie", "b=2"),
        ];
        let map = recorded(&fields);
        assert_eq!(map.len(), 2);
        let cookies: Vec<_> = map.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }
}
