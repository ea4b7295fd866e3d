use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Body of `POST /api/v1/admin/activities` as sent; parsed into [`NewActivity`].
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewActivityRequest {
    pub name: String,
    pub stock: i64,
    pub per_user_limit: Option<i64>,
    /// RFC 3339
    pub starts_at: String,
    /// RFC 3339, after `starts_at`
    pub ends_at: String,
}

/// Body of `PUT /api/v1/admin/activities/{id}/stock`: the new total stock.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockRequest {
    pub stock: i64,
}

/// Largest stock one activity may have (keeps every sum far from overflow).
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Largest `per_user_limit`.
pub const MAX_PER_USER_LIMIT: i64 = 1_000;

/// A validated activity, ready to be stored and seeded.
#[derive(Debug, Clone)]
pub struct NewActivity {
    pub name: String,
    pub stock: i64,
    pub per_user_limit: i64,
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
        let time = |field: &str, v: &str| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("{field} is not an RFC 3339 time ({e}): {v:?}"))
        };
        let starts_at = time("starts_at", &r.starts_at)?;
        let ends_at = time("ends_at", &r.ends_at)?;
        if ends_at <= starts_at {
            return Err("ends_at must be after starts_at".into());
        }
        Ok(Self {
            name: name.to_owned(),
            stock,
            per_user_limit,
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
            starts_at: starts.into(),
            ends_at: ends.into(),
        }
    }

    #[test]
    fn valid_request_parses_with_default_limit() {
        let a = NewActivity::try_from(req(10, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00+02:00"))
            .unwrap();
        assert_eq!((a.stock, a.per_user_limit), (10, 1));
    }

    #[test]
    fn bad_requests_are_refused() {
        let ok = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z");
        assert!(NewActivity::try_from(req(-1, ok.0, ok.1)).is_err());
        assert!(NewActivity::try_from(req(1, ok.1, ok.0)).is_err());
        assert!(NewActivity::try_from(req(1, ok.0, ok.0)).is_err());
        assert!(NewActivity::try_from(req(1, "yesterday", ok.1)).is_err());
    }
}
