// Errors from the API server, reduced to what a controller decides on. client-node's ApiException
// carries the raw response body as text and a message that embeds every response header (tokens,
// cookies, audit ids): callers log describeError(err), never err.message.

export interface KubeStatus {
  /** HTTP status code (0 when the request never got an answer). */
  code: number;
  /** metav1.Status reason, e.g. NotFound, AlreadyExists, Conflict, Invalid; "" when unknown. */
  reason: string;
  /** metav1.Status message, or a short transport description. */
  message: string;
}

/** An error we raise ourselves for raw requests (see raw.ts); same shape as a parsed ApiException. */
export class KubeApiError extends Error implements KubeStatus {
  readonly code: number;
  readonly reason: string;
  constructor(status: KubeStatus) {
    super(status.message);
    this.name = "KubeApiError";
    this.code = status.code;
    this.reason = status.reason;
  }
}

const MAX_MESSAGE = 512;

function clip(s: string): string {
  return s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE)}…` : s;
}

/** Parses a metav1.Status out of a response body given as text or an already-parsed object. */
export function statusFromBody(code: number, body: unknown): KubeStatus {
  let parsed: unknown = body;
  if (typeof body === "string") {
    try {
      parsed = JSON.parse(body);
    } catch {
      return { code, reason: "", message: clip(body.trim()) };
    }
  }
  if (parsed && typeof parsed === "object") {
    const o = parsed as { reason?: unknown; message?: unknown; code?: unknown };
    return {
      code: typeof o.code === "number" && o.code > 0 ? o.code : code,
      reason: typeof o.reason === "string" ? o.reason : "",
      message: clip(typeof o.message === "string" ? o.message : ""),
    };
  }
  return { code, reason: "", message: "" };
}

/** The API status of an error thrown by client-node or by raw.ts; undefined for non-API errors. */
export function apiStatus(err: unknown): KubeStatus | undefined {
  if (err instanceof KubeApiError) return { code: err.code, reason: err.reason, message: err.message };
  if (!err || typeof err !== "object") return undefined;
  const e = err as { code?: unknown; body?: unknown; statusCode?: unknown };
  // ApiException: numeric code + body. Watch errors: statusCode only.
  if (typeof e.code === "number" && "body" in e) return statusFromBody(e.code, e.body);
  if (typeof e.statusCode === "number") return { code: e.statusCode, reason: "", message: "" };
  return undefined;
}

export function isNotFound(err: unknown): boolean {
  return apiStatus(err)?.code === 404;
}

export function isAlreadyExists(err: unknown): boolean {
  const s = apiStatus(err);
  return s?.code === 409 && s.reason === "AlreadyExists";
}

/** Optimistic-concurrency failure (stale resourceVersion). */
export function isConflict(err: unknown): boolean {
  const s = apiStatus(err);
  return s?.code === 409 && s.reason !== "AlreadyExists";
}

/** One line safe to log: status code, reason and the server's message; never headers. */
export function describeError(err: unknown): string {
  const s = apiStatus(err);
  if (s) {
    const parts = [`HTTP ${s.code}`];
    if (s.reason) parts.push(s.reason);
    if (s.message) parts.push(s.message);
    return parts.join(": ");
  }
  if (err instanceof Error) {
    // Transport errors (ECONNREFUSED, TLS, abort) carry no headers; keep name and a clipped message.
    const cause = (err as Error & { cause?: { code?: unknown } }).cause;
    const code = cause && typeof cause.code === "string" ? ` (${cause.code})` : "";
    return clip(`${err.name}: ${err.message}${code}`);
  }
  return clip(String(err));
}
