// k6 scenario of an order's life after the purchase (loadtest/lifecycle runs it).
//
// Buyers far more numerous than the stock each buy once (one Idempotency-Key; a share
// resends the same request and must get the same order). Of the winners, by user id:
// 60 % pay (token — retried while the order is still `pending` —, pay, a share sends the pay
// twice with the same key, then waits for `paid`), 20 % cancel (a share twice), 20 % walk
// away and let the order expire. Losers keep coming as new buyers until the end, so units
// that come back (cancelled, expired) are sold again.
//
// Environment: BASE_URL, ACTIVITY, TOKENS (one buyer JWT per line, user ids from USER0),
// USER0, DURATION_SECS, VUS, SUMMARY_JSON.
import http from 'k6/http';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';

const BASE = __ENV.BASE_URL;
const ACTIVITY = __ENV.ACTIVITY;
const USER0 = parseInt(__ENV.USER0 || '1');
const tokens = new SharedArray('tokens', () => open(__ENV.TOKENS).split('\n').filter((t) => t));

const accepted = new Counter('orders_accepted');
const soldOut = new Counter('rejected_sold_out');
const inconsistent = new Counter('inconsistent_replays');
const unexpected = new Counter('unexpected_answers');
const paid = new Counter('orders_paid');
const payStarted = new Counter('payments_started');
const payReplays = new Counter('payment_replays');
const cancelled = new Counter('orders_cancelled');
const walkedAway = new Counter('orders_walked_away');
const timeToPaid = new Trend('time_to_paid_ms', true);

http.setResponseCallback(http.expectedStatuses(200, 201, 202, 409));

export const options = {
  scenarios: {
    buyers: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '32'),
      duration: `${__ENV.DURATION_SECS || '20'}s`,
    },
  },
  thresholds: {
    unexpected_answers: ['count==0'],
    inconsistent_replays: ['count==0'],
  },
};

function post(path, token, headers) {
  return http.post(`${BASE}${path}`, null, {
    headers: Object.assign({ Authorization: `Bearer ${token}` }, headers || {}),
    tags: { name: path.replace(/[0-9]{6,}/g, '{id}') },
  });
}

function odd(what, r) {
  unexpected.add(1);
  console.warn(`${what}: ${r.status} ${r.body}`);
}

/** Buys until a definitive answer: the order (or null when sold out). */
function buy(user, token) {
  const key = `buy-${user}`;
  for (let i = 0; i < 20; i++) {
    const r = post(`/api/v1/activities/${ACTIVITY}/purchase`, token, { 'Idempotency-Key': key });
    if (r.status === 201) {
      const order = r.json('order_id');
      if (r.headers['Idempotent-Replayed'] !== 'true') accepted.add(1);
      if (user % 5 === 0) {
        // A client retry of the same request: the same order.
        const again = post(`/api/v1/activities/${ACTIVITY}/purchase`, token, { 'Idempotency-Key': key });
        if (again.status !== 201 || again.json('order_id') !== order) inconsistent.add(1);
      }
      return order;
    }
    if (r.status === 409 && r.json('code') === 'sold_out') {
      soldOut.add(1);
      return null;
    }
    if (r.status === 503 || r.status === 0) {
      sleep(0.1);
      continue;
    }
    odd('purchase', r);
    return null;
  }
  odd('purchase never answered', { status: 0, body: '' });
  return null;
}

/** A payment token, waiting while the order is still pending. */
function paymentToken(order, token) {
  for (let i = 0; i < 100; i++) {
    const r = post(`/api/v1/orders/${order}/payment-token`, token);
    if (r.status === 200 || r.status === 201) return r.json('payment_token');
    if (r.status === 409 && r.json('code') === 'order_not_ready') {
      sleep(0.1);
      continue;
    }
    odd('payment-token', r);
    return null;
  }
  return null;
}

function pay(user, order, token) {
  const started = Date.now();
  const pt = paymentToken(order, token);
  if (!pt) return;
  const headers = { 'Payment-Token': pt, 'Idempotency-Key': `pay-${order}` };
  const r = post(`/api/v1/orders/${order}/pay`, token, headers);
  if (r.status !== 202) return odd('pay', r);
  payStarted.add(1);
  if (user % 3 === 0) {
    // A double click on "pay": the same payment.
    const again = post(`/api/v1/orders/${order}/pay`, token, headers);
    if (again.status !== 202 || again.json('payment_id') !== r.json('payment_id')) inconsistent.add(1);
    else payReplays.add(1);
  }
  for (let i = 0; i < 200; i++) {
    sleep(0.1);
    const o = http.get(`${BASE}/api/v1/orders/${order}`, {
      headers: { Authorization: `Bearer ${token}` },
      tags: { name: '/api/v1/orders/{id}' },
    });
    if (o.status === 200 && o.json('status') === 'paid') {
      paid.add(1);
      timeToPaid.add(Date.now() - started);
      return;
    }
  }
}

function cancel(user, order, token) {
  for (let i = 0; i < 100; i++) {
    const r = post(`/api/v1/orders/${order}/cancel`, token);
    if (r.status === 200) {
      cancelled.add(1);
      if (user % 2 === 0) {
        const again = post(`/api/v1/orders/${order}/cancel`, token);
        if (again.status !== 200 || again.json('status') !== 'cancelled') inconsistent.add(1);
      }
      return;
    }
    if (r.status === 409 && r.json('code') === 'order_not_ready') {
      sleep(0.1);
      continue;
    }
    return odd('cancel', r);
  }
}

export default function () {
  const i = exec.scenario.iterationInTest;
  if (i >= tokens.length) {
    sleep(1);
    return;
  }
  const user = USER0 + i;
  const token = tokens[i];
  const order = buy(user, token);
  if (!order) {
    sleep(0.05); // a loser comes back as a new buyer after a moment
    return;
  }
  const choice = user % 10;
  if (choice < 6) pay(user, order, token);
  else if (choice < 8) cancel(user, order, token);
  else walkedAway.add(1);
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY_JSON || 'lifecycle-summary.json']: JSON.stringify(data, null, 1) };
}
