//! Byte sizes (`"128kb"`) and durations (`"30s"`) as Codis config files write them.
//!
//! Both parse what Codis parses: one number, optionally fractional, and one unit; a
//! bare number means bytes or seconds. Both print the way Codis prints them, so a
//! config dumped by the proxy reads the same as Codis's.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that could not be read as a size or duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {hint}")]
pub struct SizeError {
    what: &'static str,
    text: String,
    hint: &'static str,
}

const KB: i64 = 1 << 10;
const UNITS: [(&str, i64); 6] = [
    ("pb", KB << 40),
    ("tb", KB << 30),
    ("gb", KB << 20),
    ("mb", KB << 10),
    ("kb", KB),
    ("b", 1),
];

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub i64);

impl ByteSize {
    pub fn bytes(self) -> i64 {
        self.0
    }
}

/// Splits `"  12.5 kb "` into `("12.5", "kb")`; the number may be negative.
fn split_number(s: &str) -> Option<(&str, &str)> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (c == '-' && i == 0)))
        .map_or(s.len(), |(i, _)| i);
    let (num, unit) = s.split_at(end);
    (!num.is_empty() && num != "-").then(|| (num, unit.trim()))
}

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, SizeError> {
        let err = || SizeError {
            what: "byte size",
            text: s.to_string(),
            hint: "write a number with b, kb, mb, gb, tb or pb (like \"128kb\")",
        };
        let (num, unit) = split_number(s).ok_or_else(err)?;
        let unit = unit.to_ascii_lowercase();
        let mult = match unit.as_str() {
            "" | "b" => 1,
            u => UNITS
                .iter()
                .find(|(name, _)| *name == u || (u.len() == 1 && name.starts_with(u)))
                .map(|&(_, m)| m)
                .ok_or_else(err)?,
        };
        if let Ok(n) = num.parse::<i64>() {
            return n.checked_mul(mult).map(ByteSize).ok_or_else(err);
        }
        let f: f64 = num.parse().map_err(|_| err())?;
        let v = f * mult as f64;
        if !v.is_finite() || v.abs() > i64::MAX as f64 {
            return Err(err());
        }
        Ok(ByteSize(v as i64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0");
        }
        for (name, mult) in UNITS.iter().take(5) {
            if self.0 % mult == 0 {
                return write!(f, "{}{}", self.0 / mult, name);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A duration as Codis writes it (`"5s"`, `"30m"`, `"500ms"`; bare numbers are seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct TimeSize(pub Duration);

impl TimeSize {
    pub fn duration(self) -> Duration {
        self.0
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for TimeSize {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, SizeError> {
        let err = || SizeError {
            what: "duration",
            text: s.to_string(),
            hint: "write a non-negative number with ns, us, ms, s, m or h (like \"30s\")",
        };
        let (num, unit) = split_number(s).ok_or_else(err)?;
        let nanos_per: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "" | "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        let v: f64 = num.parse().map_err(|_| err())?;
        let nanos = v * nanos_per;
        if !nanos.is_finite() || nanos < 0.0 || nanos > u64::MAX as f64 {
            return Err(err());
        }
        Ok(TimeSize(Duration::from_nanos(nanos.round() as u64)))
    }
}

impl fmt::Display for TimeSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.as_nanos();
        if n == 0 {
            return f.write_str("0");
        }
        for (unit, per) in [
            ("h", 3_600_000_000_000u128),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
        ] {
            if n.is_multiple_of(per) {
                return write!(f, "{}{}", n / per, unit);
            }
        }
        write!(f, "{n}ns")
    }
}

macro_rules! text_serde {
    ($t:ty, $expect:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expect)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$t, E> {
                        v.to_string().parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$t, E> {
                        v.to_string().parse().map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

text_serde!(ByteSize, "a byte size such as \"128kb\"");
text_serde!(TimeSize, "a duration such as \"30s\"");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        let b = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(b("128kb"), Ok(128 << 10));
        assert_eq!(b("1024mb"), Ok(1 << 30));
        assert_eq!(b("512"), Ok(512));
        assert_eq!(b(" 1.5 k "), Ok(1536));
        assert_eq!(b("32MB"), Ok(32 << 20));
        assert_eq!(b("0"), Ok(0));
        assert!(b("").is_err());
        assert!(b("12xb").is_err());
        assert!(b("kb").is_err());
        assert!(b("99999999pb").is_err());
        for (v, s) in [
            (0, "0"),
            (128 << 10, "128kb"),
            (1 << 30, "1gb"),
            (1000, "1000"),
            (256 << 20, "256mb"),
        ] {
            assert_eq!(ByteSize(v).to_string(), s);
        }
    }

    #[test]
    fn durations() {
        let t = |s: &str| s.parse::<TimeSize>().map(|t| t.0);
        assert_eq!(t("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(t("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(t("5"), Ok(Duration::from_secs(5)));
        assert_eq!(t("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(t("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(t("75s"), Ok(Duration::from_secs(75)));
        assert!(t("-1s").is_err());
        assert!(t("1h30m").is_err());
        assert!(t("1d").is_err());
        for (d, s) in [
            (Duration::ZERO, "0"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(1800), "30m"),
            (Duration::from_millis(1500), "1500ms"),
        ] {
            assert_eq!(TimeSize(d).to_string(), s);
        }
    }

    #[test]
    fn serde_roundtrip() {
        #[derive(Deserialize, Serialize)]
        struct C {
            a: ByteSize,
            b: TimeSize,
        }
        let c: C = serde_json::from_str(r#"{"a":"64kb","b":"20s"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"a":"64kb","b":"20s"}"#
        );
        let e = serde_json::from_str::<C>(r#"{"a":"64zb","b":"20s"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("invalid byte size \"64zb\""), "{e}");
    }
}
