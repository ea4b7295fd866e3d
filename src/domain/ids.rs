//! 64-bit ids that arrive as path segments or token claims: decimal digits only, non-zero.

/// Defines a non-zero u64 id newtype parsed from strict decimal text.
macro_rules! decimal_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            /// Parses decimal digits only (no sign, spaces or `+`), non-zero.
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

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

decimal_id!(
    /// A 64-bit activity id (a snowflake, globally unique across deployments sharing MySQL).
    ActivityId
);
decimal_id!(
    /// The authenticated buyer: JWT `sub` or the trusted `X-User-Id` header.
    UserId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_positive_decimals_parse() {
        assert_eq!(ActivityId::parse("42").map(ActivityId::get), Some(42));
        assert_eq!(
            UserId::parse("18446744073709551615").map(UserId::get),
            Some(u64::MAX)
        );
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1e3",
            "abc",
            " 1",
            "18446744073709551616",
            "042",
            "00",
            "000042",
        ] {
            assert!(ActivityId::parse(bad).is_none(), "{bad:?}");
            assert!(UserId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
