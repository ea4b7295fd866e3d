//! Integers in JSON request bodies, as JSON (and JSON Schema's `integer`) defines them: a
//! number without a fractional part, however it is written. `5` and `5.0` are the same
//! integer; `5.5` is not one, nor is a value beyond 2^53 written as a float (it may have
//! been rounded on the way). serde alone refuses `5.0` for an `i64`, which a client
//! generating JSON from a float-only language (JavaScript) would meet.
//!
//! Use with `#[serde(deserialize_with = "…")]`: [`integer`] for a required field,
//! [`optional`] for one where `null` means absent, [`present`] for one that may be left out
//! but not sent as `null` (a client that sends `null` has a bug worth telling it about).

use serde::de::{self, Deserializer, Visitor};

/// Largest float that still names exactly one integer.
const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        if v.fract() == 0.0 && v.abs() <= EXACT {
            Ok(v as i64)
        } else {
            Err(E::invalid_type(de::Unexpected::Float(v), &self))
        }
    }
}

/// A required integer field.
pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_i64(IntVisitor)
}

/// An optional integer field: absent or `null` is `None` (use with `#[serde(default)]`).
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct OptVisitor;
    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            integer(d).map(Some)
        }
    }
    d.deserialize_option(OptVisitor)
}

/// An integer field that may be left out (use with `#[serde(default)]`) but not be `null`.
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    integer(d).map(Some)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::integer")]
        n: i64,
        #[serde(default, deserialize_with = "super::optional")]
        o: Option<i64>,
        #[serde(default, deserialize_with = "super::present")]
        p: Option<i64>,
    }

    fn parse(s: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn integers_however_written_and_nothing_else() {
        assert_eq!(parse(r#"{"n": 5}"#).unwrap().n, 5);
        assert_eq!(parse(r#"{"n": 5.0}"#).unwrap().n, 5);
        assert_eq!(parse(r#"{"n": -2e3}"#).unwrap().n, -2000);
        for bad in [
            r#"{"n": 5.5}"#,
            r#"{"n": "5"}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": 99999999999999999999}"#,
            r#"{"n": null}"#,
            r#"{}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn optional_takes_null_present_does_not() {
        let b = parse(r#"{"n": 1, "o": null}"#).unwrap();
        assert_eq!((b.o, b.p), (None, None));
        let b = parse(r#"{"n": 1, "o": 2.0, "p": 3.0}"#).unwrap();
        assert_eq!((b.o, b.p), (Some(2), Some(3)));
        assert!(parse(r#"{"n": 1, "p": null}"#).is_err());
    }
}
