// A small crowd for the dashboard scenario of tests/browser/test_pages.py: 60 purchases a
// second for 5 s, each by another user (tokens from `seckill token --count`), on the
// activity ACTIVITY of the service at BASE. Answers are not checked here: the scenario
// compares the dashboard with the admin API.
import http from 'k6/http';
import exec from 'k6/execution';

const tokens = open(__ENV.TOKENS).split('\n').filter((t) => t.length > 0);

export const options = {
  scenarios: {
    buy: {
      executor: 'constant-arrival-rate',
      rate: 60,
      timeUnit: '1s',
      duration: '5s',
      preAllocatedVUs: 20,
    },
  },
};

export default function () {
  const n = exec.scenario.iterationInTest;
  http.post(`${__ENV.BASE}/api/v1/activities/${__ENV.ACTIVITY}/purchase`, null, {
    headers: {
      Authorization: `Bearer ${tokens[n % tokens.length]}`,
      'Idempotency-Key': `k6-${n}`,
    },
  });
}
