// k6 flash-sale scenario: a spike of distinct buyers at sale start, some resending the same
// request (same Idempotency-Key: client retries) and some double-clicking (a new key), then
// a flood of latecomers after the sell-out, then /healthz under the same load (HTTP ceiling).
//
// Environment (set by loadtest/run):
//   BASE_URL     http://127.0.0.1:18282
//   ACTIVITY     activity id of the sale (stock large enough for the spike)
//   FLOOD_ACTIVITY  a sold-out activity for the flood phase (default ACTIVITY)
//   TOKENS       file with one buyer JWT per line (`seckill token --user 1 --count N`)
//   SPIKE_RATE   peak arrival rate (requests/s) of the spike     (default 8000)
//   SPIKE_SECS   seconds at the peak rate, after a 2 s ramp     (default 10)
//   FLOOD_SECS   seconds of sold-out flood, 64 VUs closed loop   (default 10)
//   HEALTH_SECS  seconds of GET /healthz, 64 VUs                  (default 10)
//   RETRY_SHARE  share of buyers who resend the same request     (default 0.2)
//   CLICK_SHARE  share of buyers who double-click with a new key (default 0.05)
//   VUS          virtual users of the closed-loop phases         (default 64)
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Gauge } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const ACTIVITY = __ENV.ACTIVITY;
const FLOOD_ACTIVITY = __ENV.FLOOD_ACTIVITY || ACTIVITY;
const SPIKE_RATE = parseInt(__ENV.SPIKE_RATE || '8000');
const SPIKE_SECS = parseInt(__ENV.SPIKE_SECS || '10');
const FLOOD_SECS = parseInt(__ENV.FLOOD_SECS || '10');
const HEALTH_SECS = parseInt(__ENV.HEALTH_SECS || '10');
const RETRY_SHARE = parseFloat(__ENV.RETRY_SHARE || '0.2');
const CLICK_SHARE = parseFloat(__ENV.CLICK_SHARE || '0.05');
const VUS = parseInt(__ENV.VUS || '64');
const RAMP_SECS = 2;
const GAP_SECS = 1;

const tokens = new SharedArray('tokens', () => open(__ENV.TOKENS).split('\n').filter((t) => t));

const accepted = new Counter('orders_accepted'); // fresh 201s (not replays)
const replayed = new Counter('orders_replayed');
const soldOut = new Counter('rejected_sold_out');
const already = new Counter('rejected_already_purchased');
const unexpected = new Counter('unexpected_answers');
const inconsistent = new Counter('inconsistent_replays');
// When the scenarios' clock started (unix ms): loadtest/run places the phases on the timeline.
const runStarted = new Gauge('run_started_ms');

// 201 and 409 are expected outcomes of a flash sale; anything else is a failure.
http.setResponseCallback(http.expectedStatuses(201, 409));

const spikeEnd = RAMP_SECS + SPIKE_SECS;
const floodStart = spikeEnd + GAP_SECS;
const healthStart = floodStart + FLOOD_SECS + GAP_SECS;

export const options = {
  discardResponseBodies: false,
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      exec: 'buyer',
      startRate: 0,
      timeUnit: '1s',
      preAllocatedVUs: VUS,
      maxVUs: VUS, // at most VUS requests in flight: beyond capacity, iterations are dropped
      stages: [
        { target: SPIKE_RATE, duration: `${RAMP_SECS}s` },
        { target: SPIKE_RATE, duration: `${SPIKE_SECS}s` },
      ],
      tags: { phase: 'spike' },
    },
    flood: {
      executor: 'constant-vus',
      exec: 'latecomer',
      vus: VUS,
      duration: `${FLOOD_SECS}s`,
      startTime: `${floodStart}s`,
      tags: { phase: 'flood' },
    },
    healthz: {
      executor: 'constant-vus',
      exec: 'health',
      vus: VUS,
      duration: `${HEALTH_SECS}s`,
      startTime: `${healthStart}s`,
      tags: { phase: 'healthz' },
    },
  },
  thresholds: {
    // Sub-metrics per phase (listed so that the summary carries their percentiles).
    'http_req_duration{phase:spike}': ['p(99)<1000'],
    'http_req_duration{phase:flood}': ['p(99)<1000'],
    'http_req_duration{phase:healthz}': ['p(99)<1000'],
    'http_reqs{phase:spike}': ['count>0'],
    'http_reqs{phase:flood}': ['count>0'],
    'http_reqs{phase:healthz}': ['count>0'],
    // Arrivals the spike started (asked = started + dropped_iterations): in the summary.
    'iterations{scenario:spike}': ['count>=0'],
    run_started_ms: ['value>0'],
    http_req_failed: ['rate<0.001'],
    unexpected_answers: ['count==0'],
    inconsistent_replays: ['count==0'],
    checks: ['rate>0.999'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

let warned = 0;

// Runs once, right before the scenarios start (their startTime counts from here).
export function setup() {
  runStarted.add(Date.now());
}

function buy(user, key, phase, activity = ACTIVITY) {
  const res = http.post(`${BASE}/api/v1/activities/${activity}/purchase`, null, {
    headers: { Authorization: `Bearer ${tokens[user]}`, 'Idempotency-Key': key },
    tags: { phase, name: 'purchase' },
  });
  let body = {};
  try {
    body = res.json();
  } catch (_) {
    // not JSON: counted as unexpected below
  }
  const ok = check(res, { 'purchase answered 201 or 409': (r) => r.status === 201 || r.status === 409 });
  if (!ok) {
    unexpected.add(1);
    if (warned++ < 5) console.warn(`unexpected answer: ${res.status} ${res.error || ''} ${String(res.body).slice(0, 200)}`);
  }
  if (res.status === 201) {
    if (res.headers['Idempotent-Replayed'] === 'true') replayed.add(1);
    else accepted.add(1);
  } else if (res.status === 409 && body.code === 'sold_out') soldOut.add(1);
  else if (res.status === 409 && body.code === 'already_purchased') already.add(1);
  return { status: res.status, order: body.order_id, code: body.code };
}

// Buyers of the spike: user i is the i-th iteration, so every buyer is distinct.
export function buyer() {
  const user = exec.scenario.iterationInTest % tokens.length;
  const key = `k-${user}`;
  const first = buy(user, key, 'spike');
  if (Math.random() < RETRY_SHARE) {
    // The client did not see the answer and resends: same key, same payload.
    const again = buy(user, key, 'spike');
    const same = first.status === 201
      ? again.status === 201 && again.order === first.order
      : again.status === 409 || again.status === 201;
    if (!same) inconsistent.add(1);
  }
  if (Math.random() < CLICK_SHARE) {
    // A double click: a second key. Never a second order.
    const other = buy(user, `${key}-dbl`, 'spike');
    if (other.status === 201 && first.status === 201 && other.order !== first.order) inconsistent.add(1);
  }
}

// After the sell-out: buyers who never had a chance (distinct, from the end of the file).
export function latecomer() {
  const user = tokens.length - 1 - (exec.scenario.iterationInTest % (tokens.length / 2));
  buy(user, `late-${user}`, 'flood', FLOOD_ACTIVITY);
}

export function health() {
  const res = http.get(`${BASE}/healthz`, {
    tags: { phase: 'healthz', name: 'healthz' },
    responseCallback: http.expectedStatuses(200),
  });
  check(res, { 'healthz 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const out = __ENV.SUMMARY_JSON || 'k6-summary.json';
  return { [out]: JSON.stringify(data, null, 2), stdout: textSummary(data) };
}

function textSummary(data) {
  const m = data.metrics;
  const line = (name) => {
    const d = m[`http_req_duration{phase:${name}}`];
    const r = m[`http_reqs{phase:${name}}`];
    if (!d || !r) return `${name}: no data\n`;
    return `${name}: ${r.values.count} requests, ${r.values.rate.toFixed(0)}/s overall, ` +
      `p50 ${d.values.med.toFixed(2)} ms, p95 ${d.values['p(95)'].toFixed(2)} ms, p99 ${d.values['p(99)'].toFixed(2)} ms\n`;
  };
  const c = (name) => (m[name] ? m[name].values.count : 0);
  return line('spike') + line('flood') + line('healthz') +
    `accepted ${c('orders_accepted')}, replayed ${c('orders_replayed')}, sold_out ${c('rejected_sold_out')}, ` +
    `already_purchased ${c('rejected_already_purchased')}, unexpected ${c('unexpected_answers')}, ` +
    `inconsistent ${c('inconsistent_replays')}\n`;
}
