//! The RFC 9110 character classes both the route table and the wire check against.

/// A `tchar` of RFC 9110 (the bytes of a method or a header name).
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A field value as RFC 9110 §5.5 allows: no control bytes but horizontal tab (CR, LF, NUL
/// and the rest would end or corrupt the header).
pub(crate) fn is_field_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}
