use std::fmt;

/// The authenticated buyer: JWT `sub` or the trusted `X-User-Id` header, a non-zero u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(u64);

impl UserId {
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

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
