/// Units in one order: at least 1. The upper bound is the activity's `per_user_limit`,
/// which only the Lua gate knows; it refuses larger quantities before any write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

/// Largest quantity accepted at parse time; any real `per_user_limit` is far below.
pub const MAX_QUANTITY: i64 = 1_000_000;

impl Quantity {
    pub const ONE: Quantity = Quantity(1);

    pub fn parse(v: i64) -> Result<Self, String> {
        if (1..=MAX_QUANTITY).contains(&v) {
            Ok(Self(v as u32))
        } else {
            Err(format!(
                "quantity must be an integer from 1 to the activity's per_user_limit, got {v}"
            ))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_negative_and_huge_are_refused() {
        assert_eq!(Quantity::parse(1).unwrap().get(), 1);
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(-3).is_err());
        assert!(Quantity::parse(MAX_QUANTITY + 1).is_err());
    }
}
