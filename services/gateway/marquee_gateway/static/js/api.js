// The gateway's public API, with errors turned into messages a person can act on.

export class ApiError extends Error {
  /**
   * kind: "offline" (no answer at all), "down" (a backend is down, 503), "rate" (429),
   * "notfound" (404), "invalid" (other 4xx), "server" (other 5xx).
   */
  constructor(kind, message, { status = 0, retryAfter = 0 } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => (d && d.msg ? d.msg : JSON.stringify(d))).join("; ");
  }
  return "";
}

async function errorFrom(resp) {
  let detail = "";
  try {
    detail = detailText((await resp.json()).detail);
  } catch {
    // not JSON (a proxy's error page): the status says enough
  }
  const retryAfter = Number(resp.headers.get("Retry-After")) || 0;
  const opts = { status: resp.status, retryAfter };
  if (resp.status === 429) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again in a moment.";
    return new ApiError("rate", `Slow down a little: too many requests.${wait}`, opts);
  }
  if (resp.status === 503) {
    const what = /the (\w+) service/.exec(detail)?.[1] ?? "a backend";
    return new ApiError(
      "down",
      `The ${what} service is down right now, so this cannot be shown. It usually comes back within seconds; try again.`,
      opts,
    );
  }
  if (resp.status === 404) return new ApiError("notfound", detail || "Not found.", opts);
  if (resp.status >= 500) {
    return new ApiError("server", `Something went wrong on our side (HTTP ${resp.status}).`, opts);
  }
  return new ApiError("invalid", detail || `The request was refused (HTTP ${resp.status}).`, opts);
}

/**
 * GET or POST a /v1 path. `params` may hold arrays (repeated parameters); `signal` cancels.
 * Resolves to the JSON body; rejects with ApiError (or an AbortError when cancelled).
 */
export async function api(path, { params, body, signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(key, v);
  }
  const init = { signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(
      "offline",
      "Cannot reach Marquee: check your connection. If it is fine, the server may be down.",
    );
  }
  if (!resp.ok) throw await errorFrom(resp);
  return resp.json();
}

export const isAbort = (err) => err && err.name === "AbortError";
