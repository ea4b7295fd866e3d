use std::fmt;

/// A 64-bit activity id (a snowflake, globally unique across deployments sharing MySQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActivityId(u64);

impl ActivityId {
    /// Parses a path segment: decimal digits only, non-zero.
    pub fn parse(s: &str) -> Option<Self> {
        super::parse_decimal_u64(s).filter(|&v| v > 0).map(Self)
    }

    pub fn new(v: u64) -> Self {
        Self(v)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ActivityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::ActivityId;

    #[test]
    fn only_plain_positive_decimals_parse() {
        assert_eq!(ActivityId::parse("42").map(ActivityId::get), Some(42));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1e3",
            "abc",
            " 1",
            "18446744073709551616",
        ] {
            assert!(ActivityId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
