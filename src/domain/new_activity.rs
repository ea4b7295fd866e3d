use chrono::{DateTime, SecondsFormat, SubsecRound, Timelike, Utc};
use serde::Deserialize;

/// Body of `POST /api/v1/admin/activities` as sent; parsed into [`NewActivity`].
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Flash sale",
    "stock": 100,
    "per_user_limit": 1,
    "price_cents": 1999,
    "payment_window_secs": 900,
    "starts_at": "2030-01-01T10:00:00Z",
    "ends_at": "2030-01-01T11:00:00Z"
}))]
pub struct NewActivityRequest {
    /// 1 to 128 characters once leading and trailing white space is trimmed, no control
    /// characters (white space at either end is trimmed away, control or not).
    #[schema(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,126}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub name: String,
    /// Units on sale.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "super::json_int::integer")]
    pub stock: i64,
    /// Most units one buyer may order; absent or `null`: 1.
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "super::json_int::optional")]
    pub per_user_limit: Option<i64>,
    /// Price of one unit in cents; absent or `null`: 0.
    #[schema(minimum = 0, maximum = 100_000_000_000_i64)]
    #[serde(default, deserialize_with = "super::json_int::optional")]
    pub price_cents: Option<i64>,
    /// Seconds a buyer has to pay a stored order before it expires and its units return to
    /// the sale; absent or `null`: 900.
    #[schema(minimum = 1, maximum = 2_592_000)]
    #[serde(default, deserialize_with = "super::json_int::optional")]
    pub payment_window_secs: Option<i64>,
    /// RFC 3339, from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z, no leap second;
    /// kept to the millisecond (truncated).
    #[schema(format = DateTime, pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-")]
    pub starts_at: String,
    /// RFC 3339, after `starts_at` once both are truncated to the millisecond (else `400`);
    /// same range as `starts_at`.
    #[schema(format = DateTime, pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-")]
    pub ends_at: String,
}

/// Body of `PUT /api/v1/admin/activities/{id}/stock`: the new total stock.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"stock": 150}))]
pub struct StockRequest {
    /// The new total stock; not below the units already sold (else `409`).
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "super::json_int::integer")]
    pub stock: i64,
}

/// Largest stock one activity may have (keeps every sum far from overflow).
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Largest `per_user_limit`.
pub const MAX_PER_USER_LIMIT: i64 = 1_000;
/// Largest price of one unit (a billion currency units): price × limit stays far from
/// overflow.
pub const MAX_PRICE_CENTS: i64 = 100_000_000_000;
/// Payment window when the request names none (SPEC: 900 s).
pub const DEFAULT_PAYMENT_WINDOW_SECS: i64 = 900;
/// Longest payment window: 30 days.
pub const MAX_PAYMENT_WINDOW_SECS: i64 = 2_592_000;

/// A validated activity, ready to be stored and seeded.
#[derive(Debug, Clone)]
pub struct NewActivity {
    pub name: String,
    pub stock: i64,
    pub per_user_limit: i64,
    pub price_cents: i64,
    pub payment_window_secs: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Checks a stock figure from an admin request.
pub fn parse_stock(stock: i64) -> Result<i64, String> {
    if (0..=MAX_STOCK).contains(&stock) {
        Ok(stock)
    } else {
        Err(format!("stock must be from 0 to {MAX_STOCK}, got {stock}"))
    }
}

/// Earliest time a window may name: the Unix epoch (Redis compares windows in milliseconds
/// since it, and the snowflake ids start after it anyway).
const MIN_TIME: &str = "1970-01-01T00:00:00Z";
/// Latest: the end of year 9999, the last a MySQL `DATETIME` holds.
const MAX_TIME: &str = "9999-12-31T23:59:59.999Z";

/// Parses an RFC 3339 time as it will be stored: UTC, truncated to the millisecond (the
/// precision of `DATETIME(3)` and of the window check in Redis), so that what is validated
/// is what is kept. A leap second (`…:60`) is refused: MySQL cannot store it (MariaDB
/// silently writes `0000-00-00`), and neither can Redis' millisecond clock name it.
pub fn parse_time(field: &str, v: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(v)
        .map_err(|e| format!("{field} is not an RFC 3339 time ({e}): {v:?}"))?
        .with_timezone(&Utc);
    // chrono represents a leap second as a nanosecond field of 1e9 or more.
    if t.nanosecond() >= 1_000_000_000 {
        return Err(format!(
            "{field} is a leap second, which cannot be stored: {v:?}"
        ));
    }
    let bounds = |s: &str| DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc));
    if bounds(MIN_TIME).is_ok_and(|min| t < min) || bounds(MAX_TIME).is_ok_and(|max| t > max) {
        return Err(format!(
            "{field} must be from {MIN_TIME} to {MAX_TIME}, got {v:?}"
        ));
    }
    Ok(t.trunc_subsecs(3))
}

impl TryFrom<NewActivityRequest> for NewActivity {
    type Error = String;

    fn try_from(r: NewActivityRequest) -> Result<Self, String> {
        let name = r.name.trim();
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err("name must be 1 to 128 printable characters".into());
        }
        let stock = parse_stock(r.stock)?;
        let per_user_limit = r.per_user_limit.unwrap_or(1);
        if !(1..=MAX_PER_USER_LIMIT).contains(&per_user_limit) {
            return Err(format!(
                "per_user_limit must be from 1 to {MAX_PER_USER_LIMIT}, got {per_user_limit}"
            ));
        }
        let price_cents = r.price_cents.unwrap_or(0);
        if !(0..=MAX_PRICE_CENTS).contains(&price_cents) {
            return Err(format!(
                "price_cents must be from 0 to {MAX_PRICE_CENTS}, got {price_cents}"
            ));
        }
        let payment_window_secs = r.payment_window_secs.unwrap_or(DEFAULT_PAYMENT_WINDOW_SECS);
        if !(1..=MAX_PAYMENT_WINDOW_SECS).contains(&payment_window_secs) {
            return Err(format!(
                "payment_window_secs must be from 1 to {MAX_PAYMENT_WINDOW_SECS}, got {payment_window_secs}"
            ));
        }
        let starts_at = parse_time("starts_at", &r.starts_at)?;
        let ends_at = parse_time("ends_at", &r.ends_at)?;
        if ends_at <= starts_at {
            return Err(format!(
                "ends_at must be after starts_at (times are kept to the millisecond: \
                 {} is not after {})",
                ends_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                starts_at.to_rfc3339_opts(SecondsFormat::Millis, true)
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            stock,
            per_user_limit,
            price_cents,
            payment_window_secs,
            starts_at,
            ends_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(stock: i64, starts: &str, ends: &str) -> NewActivityRequest {
        NewActivityRequest {
            name: "sale".into(),
            stock,
            per_user_limit: None,
            price_cents: None,
            payment_window_secs: None,
            starts_at: starts.into(),
            ends_at: ends.into(),
        }
    }

    #[test]
    fn valid_request_parses_with_default_limit() {
        let a = NewActivity::try_from(req(10, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00+02:00"))
            .unwrap();
        assert_eq!((a.stock, a.per_user_limit), (10, 1));
        assert_eq!((a.price_cents, a.payment_window_secs), (0, 900));
    }

    #[test]
    fn price_and_payment_window_are_bounded() {
        let ok = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z");
        let with = |price: Option<i64>, window: Option<i64>| {
            NewActivity::try_from(NewActivityRequest {
                price_cents: price,
                payment_window_secs: window,
                ..req(1, ok.0, ok.1)
            })
        };
        assert_eq!(with(Some(1999), Some(60)).unwrap().price_cents, 1999);
        assert!(with(Some(-1), None).is_err());
        assert!(with(Some(MAX_PRICE_CENTS + 1), None).is_err());
        assert!(with(None, Some(0)).is_err());
        assert!(with(None, Some(MAX_PAYMENT_WINDOW_SECS + 1)).is_err());
        assert_eq!(with(None, Some(1)).unwrap().payment_window_secs, 1);
    }

    #[test]
    fn bad_requests_are_refused() {
        let ok = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z");
        assert!(NewActivity::try_from(req(-1, ok.0, ok.1)).is_err());
        assert!(NewActivity::try_from(req(1, ok.1, ok.0)).is_err());
        assert!(NewActivity::try_from(req(1, ok.0, ok.0)).is_err());
        assert!(NewActivity::try_from(req(1, "yesterday", ok.1)).is_err());
    }

    #[test]
    fn times_are_validated_as_stored() {
        // Shorter than a millisecond: empty once truncated to the stored precision.
        assert!(NewActivity::try_from(req(
            1,
            "2026-01-01T00:00:00.0001Z",
            "2026-01-01T00:00:00.0002Z"
        ))
        .is_err());
        // A leap second, in either time.
        for (s, e) in [
            ("2016-12-31T23:59:60Z", "2017-01-02T00:00:00Z"),
            ("2016-12-30T00:00:00Z", "2016-12-31T23:59:60Z"),
            ("2016-12-31T23:59:60.5Z", "2017-01-02T00:00:00Z"),
        ] {
            let err = NewActivity::try_from(req(1, s, e)).unwrap_err();
            assert!(err.contains("leap second"), "{err}");
        }
        // Out of what DATETIME and the epoch-millisecond window hold.
        assert!(
            NewActivity::try_from(req(1, "0001-01-01T00:00:00Z", "2026-01-01T00:00:00Z")).is_err()
        );
        assert!(
            NewActivity::try_from(req(1, "1969-12-31T23:59:59Z", "2026-01-01T00:00:00Z")).is_err()
        );
        // Kept to the millisecond, truncated (not rounded) like the column.
        let a = NewActivity::try_from(req(
            1,
            "2026-01-01T00:00:00.0019Z",
            "2026-01-01T00:00:00.0021+00:00",
        ))
        .unwrap();
        assert_eq!(a.starts_at.timestamp_subsec_micros(), 1000);
        assert_eq!(a.ends_at.timestamp_subsec_micros(), 2000);
    }
}
