// The operator's dashboard: /admin. Every figure is the admin API's
// (GET /api/v1/admin/activities/{id}), polled once a second; rates are the differences of
// its counters between two polls. The admin token is typed once and kept in sessionStorage:
// it lives as long as this browser tab.
"use strict";

let adminToken = session.get("admin_token");
const cards = new Map(); // activity id → {el, chart, last}

const OUTCOME_WORDS = { // GateOutcome::LABELS (src/gate/mod.rs)
  accepted: "accepted", replay: "replayed (a retry)", idempotency_key_reused: "key reused",
  activity_not_found: "no such sale", invalid_request: "quantity over the limit",
  activity_not_started: "not started", activity_ended: "ended",
  already_purchased: "already bought", not_seeded: "not sellable (503)", sold_out: "sold out",
  backlog_full: "writer backlog full (503)", not_replicated: "not replicated (503)",
};

function signedIn(on) {
  $("login").hidden = on;
  $("dashboard").hidden = !on;
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const t = $("admin-token").value.trim();
  try {
    await api("GET", "/api/v1/admin/activities", { token: t });
  } catch (e) {
    show("login-error", e.status === 401 ? "That token is not the admin token." : `Could not check the token: ${e.message}`).hidden = false;
    return;
  }
  adminToken = t;
  session.set("admin_token", t);
  $("admin-token").value = "";
  $("login-error").hidden = true;
  signedIn(true);
  refreshList();
});

$("logout").addEventListener("click", () => {
  session.drop("admin_token");
  adminToken = null;
  cards.forEach((c) => c.el.remove());
  cards.clear();
  signedIn(false);
});

$("create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  // Creating is not idempotent: one sale per click, never two from a double click.
  const button = ev.target.querySelector("button");
  if (button.disabled) return;
  button.disabled = true;
  try {
    await createSale();
  } finally {
    button.disabled = false;
  }
});

async function createSale() {
  const startsIn = Number($("c-starts").value), lasts = Number($("c-lasts").value);
  const starts = new Date(Date.now() + startsIn * 1000);
  const ends = new Date(starts.getTime() + lasts * 60 * 1000);
  const body = {
    name: $("c-name").value,
    stock: Number($("c-stock").value),
    price_cents: Number($("c-price").value),
    per_user_limit: Number($("c-limit").value),
    payment_window_secs: Number($("c-window").value),
    starts_at: starts.toISOString(),
    ends_at: ends.toISOString(),
  };
  try {
    const r = await api("POST", "/api/v1/admin/activities", { token: adminToken, body });
    show("create-result", `Created sale ${r.body.activity_id}: its page is /sale/${r.body.activity_id}`);
    refreshList();
  } catch (e) {
    show("create-result", `Not created: ${e.message}`);
  }
}

async function refreshList() {
  if (!adminToken) return;
  try {
    const r = await api("GET", "/api/v1/admin/activities", { token: adminToken });
    $("list-error").hidden = true;
    $("list-empty").hidden = r.body.activities.length > 0;
    // Newest first in the list: each new card goes on top, so add the oldest first.
    for (const a of [...r.body.activities].reverse()) {
      if (!cards.has(a.activity_id)) addCard(a);
    }
  } catch (e) {
    if (e.status === 401) { $("logout").click(); return; }
    show("list-error", `Could not list the sales: ${e.message}`).hidden = false;
  }
}

function addCard(a) {
  const el = $("activity-card").content.firstElementChild.cloneNode(true);
  el.dataset.activity = a.activity_id;
  el.querySelector(".a-name").textContent = `${a.name} (${a.activity_id})`;
  const link = el.querySelector(".a-link");
  link.href = `/sale/${a.activity_id}`;
  link.setAttribute("aria-label", `Sale page of ${a.name}`);
  el.querySelector(".a-window").textContent =
    `${new Date(a.starts_at).toLocaleString()} – ${new Date(a.ends_at).toLocaleString()}, ` +
    `price ${money(a.price_cents)}, stock ${a.total_stock}`;
  el.querySelector("svg").setAttribute("aria-label", `Live chart of ${a.name}`);
  const chart = new LiveChart(el.querySelector("svg"), [
    { name: "remaining", cls: "k-remaining" },
    { name: "accepted", cls: "k-accepted" },
    { name: "refused", cls: "k-refused" },
  ]);
  $("activities").prepend(el);
  cards.set(a.activity_id, { el, chart, last: null, polling: false });
  poll(a.activity_id);
}

function refusals(outcomes) {
  return Object.entries(outcomes || {}).reduce((n, [k, v]) => (k === "accepted" || k === "replay" ? n : n + v), 0);
}

async function poll(id) {
  const card = cards.get(id);
  if (!card || !adminToken || card.polling) return; // one poll per card at a time
  card.polling = true;
  // Rates are over the time between the requests' starts (closer to when the service read
  // its figures than when the answers happened to arrive).
  const t = Date.now();
  let s;
  try {
    s = (await api("GET", `/api/v1/admin/activities/${id}`, { token: adminToken })).body;
  } catch (e) {
    if (e.status === 401) $("logout").click();
    return;
  } finally {
    card.polling = false;
  }
  const last = card.last;
  const rate = (now, before) => (last ? Math.max(0, (now - before) / ((t - last.t) / 1000)) : 0);
  const acceptedPerS = last ? rate(s.accepted, last.s.accepted) : 0;
  const refusedPerS = last ? rate(refusals(s.outcomes), refusals(last.s.outcomes)) : 0;
  card.last = { t, s };
  const f = (name, value) => {
    const dd = card.el.querySelector(`[data-f="${name}"]`);
    if (dd) dd.textContent = value;
  };
  f("remaining_stock", s.remaining_stock === null ? "not in Redis" : String(s.remaining_stock));
  for (const k of ["accepted", "pending", "persisted", "paid", "cancelled", "expired", "refund_required", "dead_letters"]) {
    f(k, String(s[k]));
  }
  f("accepted_per_s", acceptedPerS.toFixed(0));
  f("refused_per_s", refusedPerS.toFixed(0));
  f("writer_lag", s.writer_lag_ms === null || s.writer_lag_ms === undefined ? "0 s" : `${(s.writer_lag_ms / 1000).toFixed(1)} s`);
  const body = card.el.querySelector("tbody");
  body.replaceChildren(...Object.entries(s.outcomes || {}).map(([k, v]) => {
    const tr = document.createElement("tr");
    const per = last ? rate(v, (last.s.outcomes || {})[k] || 0) : 0;
    for (const text of [OUTCOME_WORDS[k] || k, String(v), per.toFixed(0)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    tr.dataset.outcome = k;
    return tr;
  }));
  card.chart.push(t, { remaining: s.remaining_stock || 0, accepted: acceptedPerS, refused: refusedPerS });
}

signedIn(!!adminToken);
if (adminToken) refreshList();
setInterval(() => cards.forEach((_, id) => poll(id)), 1000);
setInterval(refreshList, 5000);
