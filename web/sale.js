// The sale page: /sale/{activity_id}.
//
// Why the purchase can never make two orders from this page, however the network behaves:
// one idempotency key lives exactly as long as one confirmation dialog. Confirming sends the
// purchase with that key and disables the button; a network error, a 503 or a 429 is retried
// with the same key, so the service answers the first attempt's order again (replayed)
// instead of deciding anew. A second click, even one the browser delivers before the button
// is disabled, joins the purchase already under way. Closing the dialog forgets the key; a
// new dialog makes a new one (and the service's one-order-per-buyer rule answers
// `already_purchased` with the existing order).
"use strict";

const activityId = location.pathname.split("/").filter(Boolean)[1] || "";
let activity = null;      // the public view, refreshed every second
let token = session.get("buyer_token");
let order = null;         // the buyer's order in this sale, once known
let skew = 0;             // server clock minus ours (ms), from the Date header
let purchase = null;      // the purchase under way: {key, promise}
let dialogKey = null;     // the idempotency key of the open dialog
let paying = false;

const RETRY_LIMIT = 12;   // attempts with one key before the page asks the buyer to try again

function now() { return Date.now() + skew; }

function userOf(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).sub || "?";
  } catch (_) { return "?"; }
}

// --- the activity ---------------------------------------------------------------------------

let activityPoll = null, loadingActivity = false;

async function loadActivity() {
  if (loadingActivity) return; // one poll at a time: never a pile of requests
  loadingActivity = true;
  try {
    const r = await api("GET", `/api/v1/activities/${encodeURIComponent(activityId)}`);
    const date = r.headers.get("Date");
    if (date) skew = new Date(date).getTime() + 500 - Date.now();
    activity = r.body;
    $("load-error").hidden = true;
    show("name", activity.name);
    document.title = `${activity.name} — flash sale`;
    show("price", money(activity.price_cents));
    show("remaining", String(activity.remaining_stock));
  } catch (e) {
    if (e.status === 404) {
      show("name", "No such sale");
      showError("load-error", "This sale does not exist. Check the address.");
      clearInterval(activityPoll);
    } else if (!activity) {
      showError("load-error", `Could not load the sale (${e.message}). Retrying…`);
    }
  } finally {
    loadingActivity = false;
  }
  tick();
}

/** The window, the countdown and the buy button: once a second and after every change. */
function tick() {
  if (!activity) return;
  const t = now(), starts = Date.parse(activity.starts_at), ends = Date.parse(activity.ends_at);
  let state = "";
  if (t < starts) {
    show("window-label", "Starts in");
    show("window", countdown(starts - t));
    state = "Not started yet.";
  } else if (t < ends) {
    show("window-label", "Ends in");
    show("window", countdown(ends - t));
    if (activity.remaining_stock <= 0) state = "Sold out.";
  } else {
    show("window-label", "Ended");
    show("window", "—");
    state = "This sale has ended.";
  }
  show("sale-state", state);
  $("buy").disabled = !token || !!order || !!purchase;
  $("signin").hidden = !!token;
  $("who").hidden = !token;
  if (token) show("who-text", `Signed in as user ${userOf(token)}.`);
  if (order) renderDeadline();
}

// --- sign-in --------------------------------------------------------------------------------

function showError(id, text) {
  const el = show(id, text);
  if (el) el.hidden = !text;
}

function signedIn(t) {
  token = t;
  session.set("buyer_token", t);
  showError("signin-error", "");
  findOrder();
  tick();
}

$("dev-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await api("POST", "/dev/token", { body: { user_id: $("dev-user").value } });
    signedIn(r.body.token);
  } catch (e) {
    showError("signin-error", e.status === 404
      ? "Signing in by user id only works in local development (the service's development secrets, on loopback). Paste a token instead."
      : `Could not sign in: ${e.message}`);
  }
});

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signedIn($("token").value.trim());
});

$("signout").addEventListener("click", () => {
  session.drop("buyer_token");
  token = null;
  order = null;
  $("order-card").hidden = true;
  $("outcome-card").hidden = true;
  tick();
});

// --- buying ---------------------------------------------------------------------------------

$("buy").addEventListener("click", () => {
  dialogKey = newKey();
  const limit = activity ? activity.per_user_limit : 1;
  const qty = $("qty");
  qty.replaceChildren(...Array.from({ length: Math.min(limit, 20) }, (_, i) => {
    const o = document.createElement("option");
    o.value = o.textContent = String(i + 1);
    return o;
  }));
  $("qty-row").hidden = limit <= 1;
  show("confirm-text", `Buy ${activity.name} for ${money(activity.price_cents)} per unit?`);
  show("confirm-progress", "");
  $("confirm-yes").disabled = false;
  qty.disabled = false;
  $("confirm").showModal();
});

$("confirm-no").addEventListener("click", () => $("confirm").close());
$("confirm").addEventListener("close", () => {
  // The dialog's key ends with it, unless its purchase is still under way (then the
  // purchase keeps its own key until it has an answer).
  dialogKey = null;
});

$("confirm-yes").addEventListener("click", () => {
  $("confirm-yes").disabled = true;
  $("buy").disabled = true;
  if (!dialogKey) return;
  // A second click joins the purchase of this key instead of starting another.
  if (purchase && purchase.key === dialogKey) return;
  // The key goes with one payload: the quantity is fixed for the dialog's purchase.
  $("qty").disabled = true;
  const key = dialogKey, quantity = Number($("qty").value || 1);
  purchase = { key, promise: buy(key, quantity, token) };
  purchase.promise.finally(() => { purchase = null; tick(); });
});

/**
 * Sends the purchase until its answer is definitive, always with the same key, payload and
 * buyer (the token of the moment of the click: a sign-out and in meanwhile changes nothing).
 */
async function buy(key, quantity, buyer) {
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await api("POST", `/api/v1/activities/${activityId}/purchase`, {
        token: buyer, headers: { "Idempotency-Key": key }, body: { quantity },
      });
      if (!r.body || !isId(r.body.order_id)) {
        // A success without a readable order (a proxy's page?): unknown, so ask again.
        throw new ApiError(0, { title: "unreadable answer" }, null);
      }
      $("confirm").close();
      const replayed = r.headers.get("Idempotent-Replayed") === "true";
      outcome(`Your order ${r.body.order_id} is placed${replayed ? " (confirmed after a retry)" : ""}.`);
      setOrder(r.body);
      return;
    } catch (e) {
      const retryable = e.status === 0 || e.status === 429 || e.status >= 500;
      if (retryable && attempt < RETRY_LIMIT) {
        show("confirm-progress", e.status === 0
          ? `Connection problem; trying again (attempt ${attempt + 1})…`
          : `The shop is busy; trying again (attempt ${attempt + 1})…`);
        await sleep(backoff(attempt, e.retryAfter));
        continue;
      }
      if (retryable) {
        const unknown = "Could not reach the shop. Your purchase may or may not have gone through";
        show("confirm-progress", `${unknown}: press Confirm to ask again (it cannot make a second order).`);
        $("confirm-yes").disabled = false;
        // The buyer closed the dialog meanwhile: say it on the page.
        if (!$("confirm").open) outcome(`${unknown}; this page shows your order if it did.`);
        findOrder();
        return;
      }
      $("confirm").close();
      refused(e);
      return;
    }
  }
}

function outcome(text) {
  $("outcome-card").hidden = false;
  show("outcome", text);
}

/** A definitive refusal, in plain words. */
function refused(e) {
  switch (e.code) {
    case "sold_out": outcome("Sold out: every unit has been taken."); break;
    case "already_purchased":
      outcome(`You already bought in this sale: order ${e.problem.order_id}.`);
      if (isId(e.problem.order_id)) loadOrder(e.problem.order_id);
      break;
    case "activity_not_started": outcome("The sale has not started yet. Try again when the countdown ends."); break;
    case "activity_ended": outcome("The sale has ended."); break;
    case "unauthorized":
      outcome("Your sign-in is no longer valid. Sign in again.");
      session.drop("buyer_token"); token = null; break;
    case "activity_not_found": outcome("This sale does not exist."); break;
    default:
      outcome(`The purchase was refused: ${e.message}`);
      findOrder(); // whatever it was, an order this buyer has is shown
  }
  tick();
}

// --- the order ------------------------------------------------------------------------------

/** On load (and after sign-in): the buyer's order in this sale, if there is one. */
async function findOrder() {
  if (!token) return;
  try {
    const r = await api("GET", `/api/v1/activities/${activityId}/purchase`, { token });
    setOrder(r.body);
  } catch (e) {
    if (e.status === 401) { session.drop("buyer_token"); token = null; tick(); }
  }
}

async function loadOrder(id) {
  try {
    const r = await api("GET", `/api/v1/orders/${id}`, { token });
    setOrder(r.body);
  } catch (_) { /* the next poll tries again */ }
}

function setOrder(o) {
  const before = order && order.order_id === o.order_id ? order : {};
  order = { ...before, ...o };
  // A new status speaks for itself: a note held for a moment (say, "Payment processing…")
  // gives way.
  if (before.status && before.status !== order.status) order.note_until = 0;
  $("order-card").hidden = false;
  show("order-id", order.order_id);
  const status = $("order-status");
  status.textContent = order.status;
  status.dataset.status = order.status;
  show("order-amount", order.amount_cents === undefined ? "—" : money(order.amount_cents));
  const open = order.status === "created";
  $("pay").disabled = !open || paying;
  $("cancel").disabled = !open || paying;
  // Nothing to do with a final order: no buttons.
  const final = ["paid", "cancelled", "expired", "rejected"].includes(order.status);
  $("pay").hidden = $("cancel").hidden = final;
  const notes = {
    pending: "Your order is accepted and being stored…",
    created: paying ? "Payment processing…" : "Pay before the deadline to keep it.",
    paid: "Paid. Thank you!",
    cancelled: "Cancelled. The unit went back on sale.",
    expired: "Expired: it was not paid in time, and the unit went back on sale.",
    rejected: "The shop could not confirm this order.",
  };
  if (!order.note_until || Date.now() > order.note_until) show("order-note", notes[order.status] || "");
  renderDeadline();
  tick();
}

function renderDeadline() {
  if (!order || !order.payment_deadline) { show("order-deadline", "—"); return; }
  if (order.status !== "created") { show("order-deadline", "—"); return; }
  const left = Date.parse(order.payment_deadline) - now();
  show("order-deadline", left > 0 ? countdown(left) : "deadline passed");
}

let pollingOrder = false;

async function pollOrder() {
  if (pollingOrder || !order || !token || ["paid", "cancelled", "expired", "rejected"].includes(order.status)) return;
  pollingOrder = true;
  try {
    await loadOrder(order.order_id);
    if (paying && order.status !== "created") paying = false;
    if (paying && order.note_until && Date.now() > order.note_until) {
      // Still unpaid long after the payment started: it failed, or is still running. Pay
      // is offered again; if it is still running, the service says so.
      paying = false;
      order.note_until = Date.now() + 10000;
      show("order-note", "The payment has not gone through (yet). You can try again.");
      setOrder(order);
    }
  } finally {
    pollingOrder = false;
  }
}

/** Sends one request with retries on network errors and 503, with the same headers. */
async function retrying(method, path, headers) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await api(method, path, { token, headers });
    } catch (e) {
      const retry = (e.status === 0 || e.status === 503 || e.code === "order_not_ready") && attempt < RETRY_LIMIT;
      if (!retry) throw e;
      await sleep(backoff(attempt, e.retryAfter));
    }
  }
}

$("pay").addEventListener("click", async () => {
  if (paying || !order) return;
  paying = true;
  $("pay").disabled = $("cancel").disabled = true;
  show("order-note", "Starting the payment…");
  try {
    const t = await retrying("POST", `/api/v1/orders/${order.order_id}/payment-token`, {});
    const key = newKey(); // one key for this payment: its retries cannot pay twice
    await retrying("POST", `/api/v1/orders/${order.order_id}/pay`, {
      "Payment-Token": t.body.payment_token, "Idempotency-Key": key,
    });
    show("order-note", "Payment processing…");
    order.note_until = Date.now() + 30000;
  } catch (e) {
    paying = false;
    const words = {
      order_paid: "This order is already paid.",
      order_closed: "This order can no longer be paid.",
      payment_in_progress: "A payment of this order is still in progress.",
    };
    show("order-note", words[e.code] || `The payment could not start: ${e.message}`);
    order.note_until = Date.now() + 5000;
  }
  setOrder(order);
});

$("cancel").addEventListener("click", async () => {
  if (!order) return;
  $("pay").disabled = $("cancel").disabled = true;
  try {
    const r = await retrying("POST", `/api/v1/orders/${order.order_id}/cancel`, {});
    setOrder(r.body);
  } catch (e) {
    show("order-note", e.code === "order_paid" ? "This order is paid: it cannot be cancelled."
      : e.code === "payment_in_progress" ? "A payment is in progress: wait for its result."
      : `Could not cancel: ${e.message}`);
    order.note_until = Date.now() + 5000;
    setOrder(order);
  }
});

// --- start ----------------------------------------------------------------------------------

if (!/^[1-9][0-9]{0,19}$/.test(activityId)) {
  show("name", "No such sale");
  showError("load-error", "The address does not name a sale.");
} else {
  loadActivity();
  findOrder();
  activityPoll = setInterval(loadActivity, 1000);
  setInterval(tick, 250);
  setInterval(pollOrder, 1000);
}
