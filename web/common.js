// Shared by the sale page and the admin dashboard: the API client, money and time formats,
// and the session's credentials. No library: the pages work offline, from the binary alone.
"use strict";

/** An answer of the API that is not a success: the problem+json body, or a network error. */
class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;          // 0: the request never got an answer (network)
    this.code = problem.code || ""; // the stable machine-readable code of the spec
    this.problem = problem;
    this.retryAfter = retryAfter;  // seconds, from Retry-After, or null
  }
}

/**
 * One request to the service. Resolves to {status, body, headers} on a 2xx; rejects with an
 * ApiError otherwise (status 0 when the network failed: the request may or may not have
 * reached the service, so only an idempotent retry is safe).
 */
async function api(method, path, { token, headers = {}, body, timeoutMs = 10000 } = {}) {
  const h = { ...headers };
  if (token) h["Authorization"] = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  // A request that hangs is given up (and, for a purchase, asked again with the same key)
  // rather than holding one of the browser's few connections to the service forever.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let resp, text;
  try {
    try {
      resp = await fetch(path, {
        method,
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        signal: abort.signal,
      });
    } catch (e) {
      throw new ApiError(0, { title: "network error", detail: String(e.message || e) }, null);
    }
    try {
      text = await resp.text();
    } catch (e) {
      // The answer was cut off after its headers: as unknown as no answer at all.
      throw new ApiError(0, { title: "network error", detail: `answer cut off: ${e.message || e}` }, null);
    }
  } finally {
    clearTimeout(timer);
  }
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (resp.ok) return { status: resp.status, body: json, headers: resp.headers };
  const ra = resp.headers.get("Retry-After");
  throw new ApiError(resp.status, json || { title: `HTTP ${resp.status}` }, ra ? Number(ra) : null);
}

/** A fresh idempotency key: 32 hex digits from the browser's cryptographic random source. */
function newKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * How long to wait before attempt `attempt + 1`: the answer's Retry-After if it gave one,
 * else 150 ms doubling to 2 s; capped at 5 s, and spread by ±50 % so that a crowd told
 * "Retry-After: 1" at the same moment does not come back at the same moment.
 */
function backoff(attempt, retryAfter) {
  const base = retryAfter ? retryAfter * 1000 : Math.min(2000, 150 * 2 ** (attempt - 1));
  return Math.min(5000, base) * (0.5 + Math.random());
}

/** A 64-bit id as the service writes it (decimal, no leading zero). */
const isId = (v) => typeof v === "string" && /^[1-9][0-9]{0,19}$/.test(v);

/** Cents as money, e.g. 1999 → "19.99". */
function money(cents) {
  const n = Number(cents);
  return `${Math.floor(n / 100)}.${String(n % 100).padStart(2, "0")}`;
}

/** A duration in ms as "1 d 02:03:04" / "02:03:04" / "03:04". */
function countdown(ms) {
  let s = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const p = (x) => String(x).padStart(2, "0");
  const hms = h || d ? `${p(h)}:${p(m)}:${p(s)}` : `${p(m)}:${p(s)}`;
  return d ? `${d} d ${hms}` : hms;
}

/** Credentials kept for this browser tab's session only (never localStorage). */
const session = {
  get: (name) => sessionStorage.getItem(`seckill.${name}`),
  set: (name, value) => sessionStorage.setItem(`seckill.${name}`, value),
  drop: (name) => sessionStorage.removeItem(`seckill.${name}`),
};

/** Sets an element's text (never HTML: every value shown comes from the network). */
function show(id, text) {
  const el = document.getElementById(id);
  if (el) el.textContent = text;
  return el;
}

function $(id) { return document.getElementById(id); }
