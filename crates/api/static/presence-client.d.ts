// TypeScript declarations of presence-client.js, served beside it. The status shapes are
// the API document's (`PublicStatus`, `OwnStatus`); `just contract` checks with tsc that
// they equal the types openapi-typescript generates from /api/openapi.json.

export type Presence = "online" | "away" | "dnd" | "offline";
export type OnlineStatus = "online" | "offline";
export type Availability = "auto" | "away" | "dnd" | "invisible";

/** A user's status as everyone but admins and the user is shown it. */
export interface PublicStatus {
  id: number;
  presence: Presence;
  online_status: OnlineStatus;
  /** RFC 3339. */
  last_seen: string | null;
  status_text: string | null;
  status_emoji: string | null;
  /** RFC 3339: when a do-not-disturb ends, if it has an end. */
  dnd_until: string | null;
}

/** The caller's own status: the truth, with the manual status only they see. */
export interface OwnStatus extends PublicStatus {
  availability: Availability;
  availability_until: string | null;
  status_expires_at: string | null;
}

/** What `setStatus` changes; fields left out keep their value. */
export interface StatusUpdate {
  availability?: Availability | null;
  /** RFC 3339, for `away` and `dnd` only; `null`: no end. */
  until?: string | null;
  text?: string | null;
  emoji?: string | null;
  text_expires_at?: string | null;
}

/** What went wrong, stable for clients to act on (the document's `ErrorCode`). */
export type ErrorCode =
  | "bad_request"
  | "invalid_field"
  | "unauthenticated"
  | "ticket_used"
  | "ticket_expired"
  | "invalid_credentials"
  | "forbidden"
  | "not_found"
  | "method_not_allowed"
  | "request_timeout"
  | "username_taken"
  | "payload_too_large"
  | "unsupported_media_type"
  | "too_many_requests"
  | "unavailable"
  | "internal_error";

/** A refusal from the API; `code` is `null` when the answer was not the API's (a proxy's). */
export interface PresenceError extends Error {
  status: number;
  code: ErrorCode | null;
  field: string | null;
}

export interface StartOptions {
  /** Where the API is; "" for the page's own origin. */
  baseUrl?: string;
  /** The session's token, from login. Kept in memory, sent only as a header. */
  token: string;
  /** Called once when the session has ended (logged out or expired): log in again. */
  onSessionEnd?: () => void;
}

/** Whether the user is really using the page: visible, and touched within the away timeout. */
export function isActive(): boolean;

/** Starts heartbeats for the session of `token` (the first at once). */
export function start(options: StartOptions): void;

/** Stops heartbeats and closes every stream (the session itself stays). */
export function stop(): void;

/** Logs this session out and stops everything; the token is forgotten. */
export function logout(): Promise<void>;

/** Sets the caller's manual and custom status; resolves to their own status. */
export function setStatus(fields: StatusUpdate): Promise<OwnStatus>;

export type ChangeKind = "snapshot" | "presence";

export interface Subscription {
  /** Every watched user's latest status, by id. */
  readonly statuses: Map<number, PublicStatus>;
  /** The revision of the last event received, or `null` before the first. */
  readonly lastEventId: number | null;
  close(): void;
}

/**
 * Watches `ids` (or every user with `{ all: true }`, for admins). After a drop it
 * reconnects with a new ticket and the last event id (backoff with jitter, for an
 * outage of any length), so it gets exactly what it missed; it stops when the session
 * has ended.
 */
export function subscribe(
  ids: number[],
  onChange: (changed: PublicStatus[], all: Map<number, PublicStatus>, kind: ChangeKind) => void,
  options?: { all?: boolean },
): Subscription;
