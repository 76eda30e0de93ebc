//! Protocol errors, worded as Redis words them so clients and operators recognise them.

use std::fmt;

/// A malformed frame. The connection that sent it cannot be resynchronised and must be
/// closed after the error is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*<n>` with a non-numeric or out-of-range count.
    InvalidMultibulkLength,
    /// `$<n>` with a non-numeric or out-of-range length.
    InvalidBulkLength,
    /// Inside a multibulk request, an argument did not start with `$`.
    ExpectedBulk(u8),
    /// A header or a bulk payload was not terminated by `\r\n`.
    ExpectedCrlf,
    /// An inline request line longer than the inline limit without a newline.
    InlineTooBig,
    /// An inline request with an unterminated quoted argument.
    UnbalancedQuotes,
    /// The request as a whole is larger than the query buffer limit.
    RequestTooBig(usize),
    /// A reply started with a byte that is no RESP2/RESP3 type.
    InvalidReplyType(u8),
    /// A reply nested deeper than the scanner allows.
    NestingTooDeep,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self {
            Self::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            Self::InvalidBulkLength => f.write_str("invalid bulk length"),
            Self::ExpectedBulk(b) => write!(f, "expected '$', got '{}'", printable(*b)),
            Self::ExpectedCrlf => f.write_str("expected CRLF"),
            Self::InlineTooBig => f.write_str("too big inline request"),
            Self::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            Self::RequestTooBig(limit) => write!(f, "request larger than {limit} bytes"),
            Self::InvalidReplyType(b) => write!(f, "invalid reply type '{}'", printable(*b)),
            Self::NestingTooDeep => f.write_str("reply nested too deep"),
        }
    }
}

impl std::error::Error for ProtocolError {}

fn printable(b: u8) -> char {
    if b.is_ascii_graphic() { b as char } else { '?' }
}
