//! Purchase rate limits per user and per client address, checked before Redis is touched.
//!
//! The gate is cheap, but it is one Redis core for the whole sale: a single client sending
//! thousands of purchases per second takes a share of it from everyone else, and a buyer's
//! script that retries in a tight loop gains an edge over people clicking. So every purchase
//! first passes two in-memory GCRA limiters (`governor`): one keyed by client address (before
//! authentication has cost anything more than a header read) and one keyed by user. The
//! limits are per process: with N instances behind a balancer a client gets up to N times
//! them, which is fine for their purpose (no one client floods an instance).
//!
//! The client address is the TCP peer, or behind a gateway the last entry of the configured
//! header (the one the gateway appended; entries before it are the client's own claims).
//! Keyed limiters keep a cell per key seen, so a background task prunes keys whose limit has
//! fully recovered.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio_util::sync::CancellationToken;

use crate::configuration::RateLimitSettings;
use crate::domain::UserId;
use crate::error::ApiError;

/// The two limiters of one process.
pub struct RateLimits {
    per_user: Option<DefaultKeyedRateLimiter<u64>>,
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    address_header: Option<String>,
    clock: DefaultClock,
}

/// A quota of `per_sec` with a burst of `burst` (at least `per_sec`); `None` when off.
fn quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(per_sec)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl RateLimits {
    pub fn new(s: &RateLimitSettings) -> Arc<Self> {
        let header = s.address_header.trim();
        Arc::new(Self {
            per_user: quota(s.per_user_per_sec, s.per_user_burst)
                .map(DefaultKeyedRateLimiter::keyed),
            per_address: quota(s.per_address_per_sec, s.per_address_burst)
                .map(DefaultKeyedRateLimiter::keyed),
            address_header: (!header.is_empty()).then(|| header.to_ascii_lowercase()),
            clock: DefaultClock::default(),
        })
    }

    /// Counts one purchase from the request's client address (before authentication, so
    /// that a flood of requests with bad tokens is limited too); `429` when exhausted, with
    /// the seconds until the next purchase would pass.
    pub fn check_address(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if let Some(limiter) = &self.per_address {
            if let Some(addr) = self.client_address(req) {
                if let Err(not_until) = limiter.check_key(&addr) {
                    return Err(self.limited("address", not_until.wait_time_from(self.clock.now())));
                }
            }
        }
        Ok(())
    }

    /// Counts one purchase of an authenticated user.
    pub fn check_user(&self, user: UserId) -> Result<(), ApiError> {
        if let Some(limiter) = &self.per_user {
            if let Err(not_until) = limiter.check_key(&user.get()) {
                return Err(self.limited("user", not_until.wait_time_from(self.clock.now())));
            }
        }
        Ok(())
    }

    /// The limits registered as app data (none: no limit).
    pub fn of(req: &HttpRequest) -> Option<&RateLimits> {
        req.app_data::<actix_web::web::Data<RateLimits>>()
            .map(|d| d.get_ref())
    }

    fn limited(&self, scope: &'static str, wait: Duration) -> ApiError {
        let label = match scope {
            "user" => "rate_limited_user",
            _ => "rate_limited_address",
        };
        crate::telemetry::count_purchase(label);
        ApiError::RateLimited {
            scope,
            // Retry-After is whole seconds: round up, so a client that waits is let through.
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
    }

    /// The client's address: the last entry of the trusted header when one is configured and
    /// present, else the TCP peer. `None` only for a peer without an IP (a Unix socket).
    fn client_address(&self, req: &HttpRequest) -> Option<IpAddr> {
        let from_header = self.address_header.as_ref().and_then(|name| {
            let value = req.headers().get_all(name.as_str()).last()?.to_str().ok()?;
            parse_address(value.rsplit(',').next()?.trim())
        });
        from_header.or_else(|| req.peer_addr().map(|a| a.ip()))
    }

    /// Prunes the keys whose limits have fully recovered, every `every`, until `stop`.
    pub async fn run_pruner(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some(l) = &self.per_user {
                l.retain_recent();
                l.shrink_to_fit();
            }
            if let Some(l) = &self.per_address {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
    }
}

/// An address as gateways write it: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_address(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    impl RateLimits {
        /// Both limits, in the purchase handler's order.
        fn check(&self, req: &HttpRequest, user: UserId) -> Result<(), ApiError> {
            self.check_address(req)?;
            self.check_user(user)
        }
    }

    fn limits(header: &str) -> Arc<RateLimits> {
        RateLimits::new(&RateLimitSettings {
            per_user_per_sec: 1,
            per_user_burst: 2,
            per_address_per_sec: 1,
            per_address_burst: 3,
            address_header: header.into(),
        })
    }

    fn from(peer: &str) -> TestRequest {
        TestRequest::default().peer_addr(peer.parse().unwrap())
    }

    #[test]
    fn the_user_limit_allows_its_burst_then_answers_429_with_a_whole_second() {
        let l = limits("");
        let user = UserId::new(7);
        for i in 0..2 {
            let req = from(&format!("10.0.0.{i}:1")).to_http_request();
            assert!(l.check(&req, user).is_ok());
        }
        let req = from("10.0.0.9:1").to_http_request();
        match l.check(&req, user) {
            Err(ApiError::RateLimited {
                scope: "user",
                retry_after_secs: 1,
            }) => {}
            other => panic!("{other:?}"),
        }
        // Another user is not affected.
        assert!(l.check(&req, UserId::new(8)).is_ok());
    }

    #[test]
    fn the_address_comes_from_the_peer_unless_a_trusted_header_is_configured() {
        let peer_only = limits("");
        for user in 1..=3 {
            let req = from("10.0.0.1:1")
                .insert_header(("x-forwarded-for", format!("192.0.2.{user}")))
                .to_http_request();
            assert!(peer_only.check(&req, UserId::new(user)).is_ok());
        }
        // The header is ignored without configuration: the same peer is limited.
        let req = from("10.0.0.1:1")
            .insert_header(("x-forwarded-for", "192.0.2.99"))
            .to_http_request();
        assert!(matches!(
            peer_only.check(&req, UserId::new(4)),
            Err(ApiError::RateLimited {
                scope: "address",
                ..
            })
        ));

        // Configured: the last entry counts (the one the gateway appended), whatever the
        // client put before it, and the peer (the gateway) does not.
        let gateway = limits("X-Forwarded-For");
        for user in 1..=3 {
            let req = from("10.0.0.1:1")
                .insert_header(("x-forwarded-for", format!("6.6.6.{user}, 192.0.2.1")))
                .to_http_request();
            assert!(gateway.check(&req, UserId::new(user)).is_ok());
        }
        let other_client = from("10.0.0.1:1")
            .insert_header(("x-forwarded-for", "[2001:db8::1]:443"))
            .to_http_request();
        assert!(gateway.check(&other_client, UserId::new(5)).is_ok());
        let same_client = from("10.0.0.1:1")
            .insert_header(("x-forwarded-for", "192.0.2.1"))
            .to_http_request();
        assert!(gateway.check(&same_client, UserId::new(6)).is_err());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let l = RateLimits::new(&RateLimitSettings {
            per_user_per_sec: 0,
            per_user_burst: 0,
            per_address_per_sec: 0,
            per_address_burst: 0,
            address_header: String::new(),
        });
        let req = from("10.0.0.1:1").to_http_request();
        assert!((0..1000).all(|_| l.check(&req, UserId::new(1)).is_ok()));
    }
}
