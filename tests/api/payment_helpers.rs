//! Helpers of the payment tests: priced activities, stored orders, the order actions, and
//! callbacks signed as the provider signs them.

use std::time::Duration;

use reqwest::Response;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Value};

use seckill::gate::{Gate, KeySpace};
use seckill::lifecycle::Sweeper;
use seckill::payment::{signature, ProviderClient};
use seckill::store::entity::{order, payment};

use crate::helpers::{at, token, TestApp, WEBHOOK_SECRET};

impl TestApp {
    /// An activity open now for an hour, with a price and a payment window.
    pub async fn create_priced(&self, stock: i64, price_cents: i64, window_secs: i64) -> u64 {
        let resp = self
            .admin_post(&json!({
                "name": "priced sale",
                "stock": stock,
                "price_cents": price_cents,
                "payment_window_secs": window_secs,
                "starts_at": at(-60),
                "ends_at": at(3600),
            }))
            .await;
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        body["activity_id"].as_str().unwrap().parse().unwrap()
    }

    /// Buys one unit as `user` and waits until the order is stored; returns its id.
    pub async fn buy_stored(&self, activity: u64, user: u64) -> u64 {
        let resp = self
            .purchase(activity, user, &format!("buy-{user}"), None)
            .await;
        assert_eq!(resp.status(), 201, "purchase of user {user}");
        let body: Value = resp.json().await.unwrap();
        let id = body["order_id"].as_str().unwrap().parse().unwrap();
        for _ in 0..200 {
            if self.order_row(id).await.is_some() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("order {id} was not stored");
    }

    /// `POST /api/v1/orders/{order}/{action}` as `user`, with extra headers.
    pub async fn order_action(
        &self,
        order: u64,
        user: u64,
        action: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = self
            .client
            .post(self.url(&format!("/api/v1/orders/{order}/{action}")))
            .bearer_auth(token(user));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.unwrap()
    }

    /// A payment token of the order (asserts `200` or `201`).
    pub async fn payment_token(&self, order: u64, user: u64) -> String {
        let resp = self.order_action(order, user, "payment-token", &[]).await;
        assert!(
            [200, 201].contains(&resp.status().as_u16()),
            "payment-token: {}",
            resp.status()
        );
        let body: Value = resp.json().await.unwrap();
        body["payment_token"].as_str().unwrap().to_owned()
    }

    /// `POST …/pay` with a token and an idempotency key.
    pub async fn pay(&self, order: u64, user: u64, payment_token: &str, key: &str) -> Response {
        self.order_action(
            order,
            user,
            "pay",
            &[("Payment-Token", payment_token), ("Idempotency-Key", key)],
        )
        .await
    }

    /// Token, then pay: the payment id (asserts `202`).
    pub async fn start_payment(&self, order: u64, user: u64) -> u64 {
        let t = self.payment_token(order, user).await;
        let resp = self.pay(order, user, &t, &format!("pay-{order}")).await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 202, "pay: {body}");
        body["payment_id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn cancel(&self, order: u64, user: u64) -> Response {
        self.order_action(order, user, "cancel", &[]).await
    }

    /// Sends `body` to the callback endpoint with the signature header `sig` (`None`: none).
    pub async fn callback_raw(&self, body: &str, sig: Option<String>) -> Response {
        let mut req = self
            .client
            .post(self.url("/api/v1/payments/callback"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(sig) = sig {
            req = req.header(signature::HEADER, sig);
        }
        req.send().await.unwrap()
    }

    /// A callback signed now with the service's webhook secret.
    pub async fn callback(&self, payment: u64, txn: &str, status: &str, amount: i64) -> Response {
        let body = json!({
            "payment_id": payment.to_string(),
            "provider_txn_id": txn,
            "status": status,
            "amount_cents": amount,
        })
        .to_string();
        let sig = signature::sign(
            WEBHOOK_SECRET,
            chrono::Utc::now().timestamp(),
            body.as_bytes(),
        );
        self.callback_raw(&body, Some(sig)).await
    }

    pub async fn order_row(&self, id: u64) -> Option<order::Model> {
        order::Entity::find_by_id(id).one(&self.db).await.unwrap()
    }

    pub async fn payments_of(&self, order_id: u64) -> Vec<payment::Model> {
        payment::Entity::find()
            .filter(payment::Column::OrderId.eq(order_id))
            .order_by_asc(payment::Column::Id)
            .all(&self.db)
            .await
            .unwrap()
    }

    /// The buyer's view of an order.
    pub async fn get_order(&self, order: u64, user: u64) -> Value {
        let resp = self
            .client
            .get(self.url(&format!("/api/v1/orders/{order}")))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Waits until the closed order's units are back in Redis (`stock_returned_at` set).
    pub async fn wait_returned(&self, order: u64) -> order::Model {
        for _ in 0..100 {
            let row = self.order_row(order).await.expect("order row");
            if row.stock_returned_at.is_some() {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the units of order {order} were not returned");
    }

    /// Waits until the order has `status` (the sweeper works in the background).
    pub async fn wait_status(&self, order: u64, status: &str, within: Duration) -> order::Model {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let row = self.order_row(order).await.expect("order row");
            if row.status == status {
                return row;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "order {order} is {} after {within:?}, not {status}",
                    row.status
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A gate and a sweeper of their own over the test app's Redis and database (the app's own
/// sweeper is off in these tests, so each round runs when the test says).
pub fn sweeper(app: &TestApp) -> (Gate, Sweeper) {
    sweeper_with(app, &app.settings.payment.provider_url)
}

/// The same, asking the provider at `provider_url`.
pub fn sweeper_with(app: &TestApp, provider_url: &str) -> (Gate, Sweeper) {
    let mut s = app.settings.clone();
    s.payment.provider_url = provider_url.to_owned();
    let s = &s;
    let gate = Gate::new(
        app.redis.clone(),
        KeySpace::new(app.prefix.clone()),
        s.idempotency.ttl_secs,
        s.writer.max_backlog,
    );
    let provider = ProviderClient::new(s, app.url("/api/v1/payments/callback")).unwrap();
    let sweeper = Sweeper::new(
        gate.clone(),
        app.db.clone(),
        provider,
        s.sweeper.clone(),
        &s.payment,
    );
    (gate, sweeper)
}

/// I7 at rest: Redis remaining + units of the orders that hold theirs = total, and MySQL's
/// `sold` = those units.
pub async fn assert_units_conserved(app: &TestApp, activity: u64) {
    let orders = app.orders(activity).await;
    let held: i64 = orders
        .iter()
        .filter(|o| o.status == "created" || o.status == "paid")
        .map(|o| i64::from(o.quantity))
        .sum();
    let row = app.activity_row(activity).await;
    assert_eq!(row.sold, held, "MySQL sold");
    assert_eq!(
        app.remaining(activity).await + held,
        row.total_stock,
        "Redis remaining + held units"
    );
}
