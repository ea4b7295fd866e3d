#!/usr/bin/env python3
"""The sale page and the dashboard, in a real headless browser (Debian's chromium, driven by
Selenium through chromedriver), against a running `seckill serve` and `seckill provider`
(started by scripts/checks/browser.sh, which passes their addresses).

Each scenario checks what a person would see and what the service recorded:
- create a sale on the dashboard; buy on the sale page, see the order, pay it through the
  provider, see it paid;
- a double click on "Confirm" makes one order, and the page never even asks twice with two
  keys (the service's per-activity answers show no `already_purchased`);
- the connection drops after the purchase reached the service (a proxy swallows the answer):
  the page asks again with the same key and shows the same order;
- sold out, not started, ended, already bought (in another tab), cancelled and expired are
  shown in plain words;
- during a small k6 run, the dashboard's figures are the admin API's (between two API reads
  around each look), and equal to them once the run is over.

A screenshot of each state goes to the artifacts folder. Only the standard library and
selenium (pinned by the calling script).
"""
import argparse
import http.client
import http.server
import json
import os
import re
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ap = argparse.ArgumentParser()
ap.add_argument("--base", required=True, help="the service, e.g. http://127.0.0.1:8080")
ap.add_argument("--admin-token", required=True)
ap.add_argument("--artifacts", required=True, help="folder for the screenshots")
ap.add_argument("--chromium", default="/usr/bin/chromium")
ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
ap.add_argument("--k6", help="k6 binary: without it the dashboard-under-load scenario fails")
ap.add_argument("--bin", required=True, help="the seckill binary (tokens for k6)")
args = ap.parse_args()
os.makedirs(args.artifacts, exist_ok=True)
BASE = args.base.rstrip("/")


def log(msg):
    print(f"browser: {msg}", flush=True)


# --- the API, directly (setting up sales, reading what the service recorded) -----------------

def api(method, path, token=None, body=None, headers=None, base=BASE):
    req = urllib.request.Request(base + path, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data, timeout=10) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return e.code, json.loads(text) if text else None


def iso(secs_from_now):
    t = time.time() + secs_from_now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def create_sale(name, stock, starts_in=-5, lasts=3600, window=900, price=1999):
    status, body = api("POST", "/api/v1/admin/activities", args.admin_token, {
        "name": name, "stock": stock, "starts_at": iso(starts_in), "ends_at": iso(starts_in + lasts),
        "price_cents": price, "payment_window_secs": window,
    })
    assert status == 201, (status, body)
    return body["activity_id"]


def stats(activity):
    status, body = api("GET", f"/api/v1/admin/activities/{activity}", args.admin_token)
    assert status == 200, (status, body)
    return body


def dev_token(user):
    status, body = api("POST", "/dev/token", body={"user_id": str(user)})
    assert status == 200, (status, body)
    return body["token"]


def my_order(activity, user):
    return api("GET", f"/api/v1/activities/{activity}/purchase", dev_token(user))


# --- the browser ------------------------------------------------------------------------------

def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = args.chromium
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
              "--disable-gpu"]:
        o.add_argument(a)
    return webdriver.Chrome(service=Service(args.chromedriver), options=o)


d = browser()
shots = []


def shot(name):
    path = os.path.join(args.artifacts, f"{len(shots) + 1:02d}-{name}.png")
    d.save_screenshot(path)
    shots.append(path)


def wait(what, cond, secs=15):
    try:
        return WebDriverWait(d, secs, poll_frequency=0.1).until(lambda _: cond())
    except TimeoutException:
        shot(f"timeout-{re.sub(r'[^a-z]+', '-', what.lower())}")
        raise AssertionError(f"timed out waiting for {what}") from None


def text(id_):
    return d.find_element(By.ID, id_).text


def visible(id_):
    return d.find_element(By.ID, id_).is_displayed()


def open_sale(activity, user, base=BASE, can_buy=True):
    """The sale page in a fresh tab session, signed in as `user` through the dev form."""
    d.get(f"{base}/sale/{activity}")
    d.execute_script("sessionStorage.clear()")
    d.get(f"{base}/sale/{activity}")
    wait("the sign-in form", lambda: visible("signin"))
    d.find_element(By.ID, "dev-user").send_keys(str(user))
    d.find_element(By.CSS_SELECTOR, "#dev-form button").click()
    wait("the signed-in line", lambda: visible("who") and f"user {user}" in text("who-text"))
    if can_buy:
        wait("the buy button", lambda: d.find_element(By.ID, "buy").is_enabled())


def buy_via_dialog(double_click=False):
    d.find_element(By.ID, "buy").click()
    wait("the confirmation dialog", lambda: visible("confirm"))
    confirm = d.find_element(By.ID, "confirm-yes")
    if double_click:
        ActionChains(d).double_click(confirm).perform()
    else:
        confirm.click()
    wait("the outcome", lambda: visible("outcome-card") and text("outcome"))
    return text("outcome")


def order_id_in(outcome):
    m = re.search(r"order (\d+)", outcome)
    assert m, outcome
    return m.group(1)


failures = []


def scenario(fn):
    name = fn.__name__
    log(f"--- {name}")
    t0 = time.time()
    try:
        fn()
        log(f"ok {name} ({time.time() - t0:.1f} s)")
    except Exception as e:  # noqa: BLE001 (every failure is reported, the others still run)
        failures.append(name)
        log(f"FAILED {name}: {type(e).__name__}: {e}")
        try:
            shot(f"failed-{name}")
        except Exception:  # noqa: BLE001
            pass
    return fn


# --- scenarios ----------------------------------------------------------------------------------

state = {}


def open_dashboard():
    """The dashboard in a fresh tab session, the admin token typed in."""
    d.get(f"{BASE}/admin")
    d.execute_script("sessionStorage.clear()")
    d.get(f"{BASE}/admin")
    wait("the token form", lambda: visible("login"))
    d.find_element(By.ID, "admin-token").send_keys(args.admin_token)
    d.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait("the dashboard", lambda: visible("dashboard"))


@scenario
def dashboard_creates_a_sale():
    d.get(f"{BASE}/admin")
    d.execute_script("sessionStorage.clear()")
    d.get(f"{BASE}/admin")
    wait("the token form", lambda: visible("login"))
    d.find_element(By.ID, "admin-token").send_keys("not the token")
    d.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait("the refusal", lambda: visible("login-error"))
    assert "not the admin token" in text("login-error"), text("login-error")
    d.find_element(By.ID, "admin-token").clear()
    d.find_element(By.ID, "admin-token").send_keys(args.admin_token)
    d.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait("the dashboard", lambda: visible("dashboard"))
    for id_, value in [("c-name", "Browser sale"), ("c-stock", "6"), ("c-starts", "0"),
                       ("c-window", "900")]:
        el = d.find_element(By.ID, id_)
        el.clear()
        el.send_keys(value)
    d.find_element(By.CSS_SELECTOR, "#create-form button").click()
    wait("the created sale", lambda: "Created sale" in text("create-result"))
    activity = re.search(r"Created sale (\d+)", text("create-result")).group(1)
    card = f'article[data-activity="{activity}"]'
    wait("its card", lambda: d.find_elements(By.CSS_SELECTOR, card))
    wait("its figures", lambda: d.find_element(By.CSS_SELECTOR, f'{card} [data-f="remaining_stock"]').text == "6")
    # The token is kept for this tab's session only: a reload does not ask again.
    d.refresh()
    wait("the dashboard after a reload", lambda: visible("dashboard"))
    s = stats(activity)
    assert (s["name"], s["total_stock"], s["price_cents"]) == ("Browser sale", 6, 1999), s
    state["sale"] = activity
    shot("dashboard-created")


@scenario
def buy_see_the_order_pay_and_see_it_paid():
    activity = state["sale"]
    open_sale(activity, 1001)
    assert text("name") == "Browser sale" and text("price") == "19.99", (text("name"), text("price"))
    shot("sale-page")
    outcome = buy_via_dialog()
    order = order_id_in(outcome)
    assert "is placed" in outcome, outcome
    wait("the order stored", lambda: text("order-status") == "created")
    assert text("order-id") == order and text("order-amount") == "19.99"
    assert re.match(r"^\d\d:\d\d", text("order-deadline")), text("order-deadline")
    shot("order-created")
    status, body = my_order(activity, 1001)
    assert status == 200 and body["order_id"] == order, (status, body)
    d.find_element(By.ID, "pay").click()
    wait("the order paid", lambda: text("order-status") == "paid", secs=20)
    assert "Paid" in text("order-note"), text("order-note")
    shot("order-paid")
    status, body = api("GET", f"/api/v1/orders/{order}", dev_token(1001))
    assert body["status"] == "paid" and body.get("paid_at"), body


@scenario
def a_double_click_on_confirm_makes_one_order_with_one_key():
    activity = state["sale"]
    before = stats(activity)
    open_sale(activity, 1002)
    outcome = buy_via_dialog(double_click=True)
    assert "is placed" in outcome, outcome
    order = order_id_in(outcome)
    time.sleep(2)  # a second request, if the page sent one, has had its answer
    after = stats(activity)
    assert after["accepted"] == before["accepted"] + 1, (before, after)
    got = after["outcomes"].get("already_purchased", 0) - before["outcomes"].get("already_purchased", 0)
    assert got == 0, f"the page asked again with another key ({got} already_purchased answers)"
    status, body = my_order(activity, 1002)
    assert body["order_id"] == order, body
    shot("double-click-one-order")


class DroppingProxy(http.server.BaseHTTPRequestHandler):
    """Passes requests on to the service; cuts the answer to the first purchase off after its
    headers (the service has decided it; the browser sees the connection close mid-answer,
    which it does not retry by itself: the page must), and logs each purchase's idempotency
    key."""
    protocol_version = "HTTP/1.1"
    upstream = None
    drop_next = True
    purchases = []

    def log_message(self, *a):
        pass

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        host, port = self.upstream
        conn = http.client.HTTPConnection(host, port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if self.command == "POST" and self.path.endswith("/purchase"):
            dropped = DroppingProxy.drop_next
            DroppingProxy.purchases.append((self.headers.get("Idempotency-Key"), resp.status, dropped))
            if dropped:
                DroppingProxy.drop_next = False
                self.close_connection = True
                try:
                    self.wfile.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: 400\r\n\r\n{\"order")
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the rest of the answer never comes
                except OSError:
                    pass
                return
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_HEAD = _forward


@scenario
def a_dropped_connection_is_retried_with_the_same_key_and_shows_the_same_order():
    activity = state["sale"]
    host, port = BASE.split("://")[1].split(":")
    DroppingProxy.upstream = (host, int(port))
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), DroppingProxy)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        before = stats(activity)
        open_sale(activity, 1003, base=proxy)
        outcome = buy_via_dialog()
        assert "is placed" in outcome, outcome
        order = order_id_in(outcome)
        keys = [k for k, _, _ in DroppingProxy.purchases]
        assert len(keys) >= 2 and DroppingProxy.purchases[0][2], DroppingProxy.purchases
        assert len(set(keys)) == 1, f"retried with another key: {DroppingProxy.purchases}"
        assert DroppingProxy.purchases[0][1] == 201, DroppingProxy.purchases
        status, body = my_order(activity, 1003)
        assert body["order_id"] == order, (body, order)
        after = stats(activity)
        assert after["accepted"] == before["accepted"] + 1, (before, after)
        assert after["outcomes"].get("replay", 0) > before["outcomes"].get("replay", 0), after
        shot("dropped-connection-same-order")
    finally:
        server.shutdown()


@scenario
def cancel_returns_the_unit():
    activity = state["sale"]
    open_sale(activity, 1004)
    order = order_id_in(buy_via_dialog())
    wait("the order stored", lambda: text("order-status") == "created")
    left = stats(activity)["remaining_stock"]
    d.find_element(By.ID, "cancel").click()
    wait("the order cancelled", lambda: text("order-status") == "cancelled")
    assert "went back on sale" in text("order-note"), text("order-note")
    wait("the unit back", lambda: stats(activity)["remaining_stock"] == left + 1)
    shot("order-cancelled")
    assert api("GET", f"/api/v1/orders/{order}", dev_token(1004))[1]["status"] == "cancelled"


@scenario
def sold_out_is_said_in_plain_words():
    activity = create_sale("Tiny sale", 1)
    status, _ = api("POST", f"/api/v1/activities/{activity}/purchase", dev_token(2001),
                    headers={"Idempotency-Key": "first"})
    assert status == 201
    open_sale(activity, 2002)
    wait("the remaining stock", lambda: text("remaining") == "0")
    outcome = buy_via_dialog()
    assert outcome.startswith("Sold out"), outcome
    assert not visible("order-card")
    shot("sold-out")


@scenario
def not_started_shows_the_countdown_and_says_so():
    activity = create_sale("Later sale", 5, starts_in=3600)
    open_sale(activity, 2003)
    wait("the countdown", lambda: text("window-label") == "Starts in" and re.match(r"^(00:)?59:\d\d$|^01:00:00$", text("window")))
    assert text("sale-state") == "Not started yet.", text("sale-state")
    outcome = buy_via_dialog()
    assert "not started" in outcome, outcome
    shot("not-started")


@scenario
def ended_is_said_in_plain_words():
    activity = create_sale("Past sale", 5, starts_in=-7200)  # lasted an hour, ended an hour ago
    open_sale(activity, 2005)
    wait("the ended state", lambda: text("window-label") == "Ended")
    assert text("sale-state") == "This sale has ended.", text("sale-state")
    outcome = buy_via_dialog()
    assert outcome == "The sale has ended.", outcome
    shot("ended")


@scenario
def a_buyer_who_bought_elsewhere_is_shown_the_order_they_have():
    activity = state["sale"]
    open_sale(activity, 1005)
    # Meanwhile the same buyer buys in another tab (another key).
    status, body = api("POST", f"/api/v1/activities/{activity}/purchase", dev_token(1005),
                       headers={"Idempotency-Key": "other-tab"})
    assert status == 201, (status, body)
    outcome = buy_via_dialog()
    assert outcome == f"You already bought in this sale: order {body['order_id']}.", outcome
    wait("the order", lambda: visible("order-card") and text("order-id") == body["order_id"])
    shot("already-bought")


@scenario
def an_unpaid_order_expires_at_its_deadline():
    activity = create_sale("Quick sale", 5, window=5)
    open_sale(activity, 2004)
    buy_via_dialog()
    wait("the order stored", lambda: text("order-status") in ("created", "expired"))
    wait("the order expired", lambda: text("order-status") == "expired", secs=20)
    assert "not paid in time" in text("order-note"), text("order-note")
    shot("order-expired")


@scenario
def the_dashboard_shows_the_admin_figures_during_a_k6_run():
    assert args.k6, "no k6 binary given (--k6)"
    activity = create_sale("Load sale", 150, price=500)
    users = 300
    tokens = os.path.join(args.artifacts, "k6-tokens.txt")
    with open(tokens, "w") as f:
        subprocess.run([args.bin, "token", "--user", "50001", "--count", str(users), "--ttl", "600"],
                       stdout=f, check=True)  # signed as the service signs: same settings
    open_dashboard()
    card = f'article[data-activity="{activity}"]'
    wait("the load sale's card", lambda: d.find_elements(By.CSS_SELECTOR, card), secs=10)
    k6 = subprocess.Popen(
        [args.k6, "run", "--quiet", "--no-summary", "-e", f"BASE={BASE}", "-e", f"ACTIVITY={activity}",
         "-e", f"TOKENS={tokens}", os.path.join(os.path.dirname(__file__), "k6_buyers.js")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def shown(field):
        return d.find_element(By.CSS_SELECTOR, f'{card} [data-f="{field}"]').text

    looks = 0
    while k6.poll() is None:
        a0 = stats(activity)
        # Once the page has polled since a0 (it polls once a second; a slow machine may take
        # longer), what it shows lies between a0 and a read after the look: accepted only
        # grows and the remaining stock only shrinks during the run.
        wait("the dashboard to catch up with the API",
             lambda: int(shown("accepted")) >= a0["accepted"] and int(shown("remaining_stock")) <= a0["remaining_stock"],
             secs=10)
        seen, rem = int(shown("accepted")), int(shown("remaining_stock"))
        a1 = stats(activity)
        assert seen <= a1["accepted"], (a0["accepted"], seen, a1["accepted"])
        assert a1["remaining_stock"] <= rem, (a0["remaining_stock"], rem, a1["remaining_stock"])
        looks += 1
        if looks == 2:
            d.execute_script("arguments[0].scrollIntoView()", d.find_element(By.CSS_SELECTOR, card))
            shot("dashboard-under-load")
    assert k6.returncode == 0, k6.stderr.read().decode()[-2000:]
    assert looks >= 2, f"the run was too short to look at the dashboard during it ({looks})"
    wait("the writer to drain", lambda: stats(activity)["pending"] == 0, secs=20)
    # Figures that differ from one another, so that a dashboard showing one in another's
    # place is caught: one order paid, two cancelled (their units back on sale).
    for n, user in enumerate([50001, 50002, 50003]):
        token = dev_token(user)
        status, body = api("GET", f"/api/v1/activities/{activity}/purchase", token)
        if status != 200:
            continue  # this user's purchase came after the sell-out
        order = body["order_id"]
        if n == 0:
            _, t = api("POST", f"/api/v1/orders/{order}/payment-token", token)
            status, _ = api("POST", f"/api/v1/orders/{order}/pay", token,
                            headers={"Payment-Token": t["payment_token"], "Idempotency-Key": "pay"})
            assert status == 202, status
        else:
            assert api("POST", f"/api/v1/orders/{order}/cancel", token)[0] == 200
    wait("the payment", lambda: stats(activity)["paid"] == 1, secs=20)
    final = stats(activity)
    assert (final["paid"], final["cancelled"], final["remaining_stock"]) == (1, 2, 2), final
    fields = ["remaining_stock", "accepted", "pending", "persisted", "paid", "cancelled", "expired",
              "refund_required", "dead_letters"]
    # At rest nothing changes: the page's next polls show exactly the API's figures.
    try:
        wait("the dashboard to show the API's figures",
             lambda: all(shown(f) == str(final[f]) for f in fields), secs=10)
    except AssertionError:
        raise AssertionError({f: (shown(f), final[f]) for f in fields if shown(f) != str(final[f])}) from None
    rows = {r.get_attribute("data-outcome"): r.find_elements(By.TAG_NAME, "td")[1].get_attribute("textContent")
            for r in d.find_elements(By.CSS_SELECTOR, f"{card} tbody tr")}
    assert rows == {k: str(v) for k, v in final["outcomes"].items()}, (rows, final["outcomes"])
    assert final["accepted"] == 150, final
    assert final["outcomes"].get("sold_out", 0) > 0, final["outcomes"]
    # The newest sale's card is on top; its answers by outcome opened for the picture.
    first = d.find_element(By.CSS_SELECTOR, "#activities article")
    assert first.get_attribute("data-activity") == activity, "the newest sale is not on top"
    d.find_element(By.CSS_SELECTOR, f"{card} details summary").click()
    d.execute_script("arguments[0].scrollIntoView()", d.find_element(By.CSS_SELECTOR, card))
    shot("dashboard-after-load")


@scenario
def the_sale_page_reads_on_a_phone():
    d.set_window_size(390, 844)
    open_sale(state["sale"], 1001, can_buy=False)
    wait("the order", lambda: visible("order-card") and text("order-status") == "paid")
    width = d.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone: {width} px"
    shot("sale-page-phone")
    d.set_window_size(1280, 1000)


@scenario
def every_control_has_a_label_and_is_reachable_by_keyboard():
    for path in [f"/sale/{state['sale']}", "/admin"]:
        d.get(BASE + path)
        unlabeled = d.execute_script("""
            return [...document.querySelectorAll('input, select, textarea')].filter(el => {
              if (el.labels && el.labels.length) return false;
              return !el.getAttribute('aria-label');
            }).map(el => el.id || el.name);""")
        assert not unlabeled, f"{path}: inputs without a label: {unlabeled}"
        unreachable = d.execute_script("""
            return [...document.querySelectorAll('button, a, input, select')].filter(el =>
              el.tabIndex < 0).map(el => el.id || el.textContent);""")
        assert not unreachable, f"{path}: controls out of the tab order: {unreachable}"


d.quit()
log(f"screenshots: {len(shots)} in {args.artifacts}")
if failures:
    log(f"FAILED {len(failures)}: {', '.join(failures)}")
    sys.exit(1)
log("all scenarios passed")
