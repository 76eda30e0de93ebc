//! Writing RESP: replies the proxy answers itself and requests it issues.

use bytes::{BufMut, Bytes, BytesMut};

/// Decimal digits of `v` without allocating.
pub fn int_bytes(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// RESP2 writers for any byte sink.
pub trait Encoder: BufMut {
    fn put_line(&mut self, prefix: u8, v: i64) {
        let mut tmp = [0u8; 20];
        self.put_u8(prefix);
        self.put_slice(int_bytes(v, &mut tmp));
        self.put_slice(b"\r\n");
    }

    /// `+s\r\n`; `s` must not contain CR or LF.
    fn put_simple(&mut self, s: &[u8]) {
        self.put_u8(b'+');
        self.put_slice(s);
        self.put_slice(b"\r\n");
    }

    /// `-msg\r\n`; line breaks in `msg` are replaced so the frame stays valid.
    fn put_error(&mut self, msg: &str) {
        self.put_u8(b'-');
        for b in msg.bytes() {
            self.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.put_slice(b"\r\n");
    }

    fn put_integer(&mut self, v: i64) {
        self.put_line(b':', v);
    }

    fn put_bulk(&mut self, data: &[u8]) {
        self.put_line(b'$', data.len() as i64);
        self.put_slice(data);
        self.put_slice(b"\r\n");
    }

    /// RESP2 null bulk string.
    fn put_nil(&mut self) {
        self.put_slice(b"$-1\r\n");
    }

    /// RESP3 null.
    fn put_null(&mut self) {
        self.put_slice(b"_\r\n");
    }

    fn put_array_len(&mut self, n: usize) {
        self.put_line(b'*', n as i64);
    }

    /// RESP3 map header: `n` key/value pairs follow.
    fn put_map_len(&mut self, n: usize) {
        self.put_line(b'%', n as i64);
    }
}

impl<B: BufMut + ?Sized> Encoder for B {}

/// Encodes arguments as one multibulk request.
pub fn encode_request<I, A>(args: I) -> Bytes
where
    I: IntoIterator<Item = A>,
    I::IntoIter: ExactSizeIterator,
    A: AsRef<[u8]>,
{
    let args = args.into_iter();
    let mut out = BytesMut::with_capacity(16 + args.len() * 16);
    out.put_array_len(args.len());
    for a in args {
        out.put_bulk(a.as_ref());
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        let mut b = [0u8; 20];
        for v in [0i64, 7, -7, 1024, i64::MAX, i64::MIN] {
            assert_eq!(int_bytes(v, &mut b), v.to_string().as_bytes());
        }
    }

    #[test]
    fn frames() {
        let mut out = Vec::new();
        out.put_simple(b"OK");
        out.put_error("ERR a\r\nb");
        out.put_integer(-3);
        out.put_bulk(b"xy");
        out.put_nil();
        out.put_array_len(2);
        assert_eq!(out, b"+OK\r\n-ERR a  b\r\n:-3\r\n$2\r\nxy\r\n$-1\r\n*2\r\n");
        assert_eq!(&encode_request(["GET", "k"])[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
