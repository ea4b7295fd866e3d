// Closed-loop purchases for loadtest/replica-acks: VUS buyers, each iteration a new buyer
// (X-User-Id from a trusted gateway: no JWT work on either side) with a new key, for SECS
// seconds. 201 and 503 are counted; anything else is a failure.
//
// Environment: BASE_URL, ACTIVITY, VUS (default 32), SECS (default 10), USER_BASE (first user id)
import http from 'k6/http';
import { Counter } from 'k6/metrics';
import exec from 'k6/execution';

const BASE = __ENV.BASE_URL;
const ACTIVITY = __ENV.ACTIVITY;
const USER_BASE = parseInt(__ENV.USER_BASE || '1');
const accepted = new Counter('accepted');
const unavailable = new Counter('unavailable');
const unexpected = new Counter('unexpected');

http.setResponseCallback(http.expectedStatuses(201, 503));

export const options = {
  discardResponseBodies: true,
  scenarios: {
    buyers: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '32'),
      duration: `${parseInt(__ENV.SECS || '10')}s`,
    },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
};

export default function () {
  const user = USER_BASE + exec.scenario.iterationInTest;
  const res = http.post(`${BASE}/api/v1/activities/${ACTIVITY}/purchase`, '{"quantity":1}', {
    headers: {
      'Content-Type': 'application/json',
      'X-User-Id': `${user}`,
      'Idempotency-Key': `acks-${user}`,
    },
  });
  if (res.status === 201) accepted.add(1);
  else if (res.status === 503) unavailable.add(1);
  else unexpected.add(1);
}

export function handleSummary(data) {
  const m = data.metrics;
  const out = {
    reqs_per_sec: m.http_reqs.values.rate,
    p50_ms: m.http_req_duration.values['p(50)'],
    p99_ms: m.http_req_duration.values['p(99)'],
    accepted: m.accepted ? m.accepted.values.count : 0,
    unavailable: m.unavailable ? m.unavailable.values.count : 0,
    unexpected: m.unexpected ? m.unexpected.values.count : 0,
  };
  return { [__ENV.SUMMARY]: JSON.stringify(out) + '\n' };
}
