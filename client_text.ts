/**
 * What the client says to people: errors in words (never a raw `::Ice::`
 * type name, never a stack trace), titles, durations.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
// @ts-types="./slice/streams.d.ts"
import { IceFlixStreams } from "./slice/streams.js";
import { abbreviate, CommandError } from "./client_commands.ts";
import { firstLine, refusalReason } from "./service_refusal.ts";

/** A problem the user can act on; its message is shown as it is. */
export class UserError extends Error {}

/** An operation the user cancelled with Ctrl-C. */
export class CancelledError extends Error {
  constructor() {
    super("cancelled");
  }
}

/** Whether `error` says that the object is not there, although something answered at its address. */
export function isNotThere(error: unknown): boolean {
  return error instanceof Ice.ObjectNotExistException || error instanceof Ice.FacetNotExistException ||
    error instanceof Ice.OperationNotExistException;
}

/**
 * An Ice failure to reach a service, in words.
 *
 * @example describeFailure(new Ice.ConnectionRefusedException()) // "connection refused"
 */
export function describeFailure(error: unknown): string {
  if (error instanceof Ice.ConnectionRefusedException) return "connection refused: nothing listens there";
  if (error instanceof Ice.ConnectTimeoutException) return "no answer to the connection";
  if (error instanceof Ice.InvocationTimeoutException || error instanceof Ice.TimeoutException) {
    return "no answer in time";
  }
  if (error instanceof Ice.DNSException) return "unknown host name";
  if (error instanceof Ice.ConnectionLostException || error instanceof Ice.CloseConnectionException) {
    return "the connection was lost";
  }
  if (error instanceof Ice.SocketException) return "network error";
  if (isNotThere(error)) return "something answers there, but not this service";
  if (error instanceof Ice.UnknownException) {
    const first = firstLine(error.unknown);
    return first === "" ? "the service failed" : `the service failed: ${first}`;
  }
  if (error instanceof Ice.LocalException) return "communication error";
  return error instanceof Error ? error.message : String(error);
}

/**
 * One line that says what went wrong, for the user. `service` names what
 * was called (for TemporaryUnavailable and unreachable services).
 */
export function explain(error: unknown, service = "a service"): string {
  if (error instanceof UserError || error instanceof CommandError || error instanceof CancelledError) {
    return error.message;
  }
  if (error instanceof IceFlixStreams.StreamLimitReached) return error.reason;
  if (error instanceof IceFlix.Unauthorized) return "not authorized: the services refused the session (log in again)";
  if (error instanceof IceFlix.WrongMediaId) return `unknown media id ${abbreviate(error.id)} (search again)`;
  if (error instanceof IceFlix.TemporaryUnavailable) return `${service} is temporarily unavailable; try again later`;
  // A refusal that the spec's Slice has no exception for (a limit, a full disk): the service says why in words.
  const refusal = refusalReason(error);
  if (refusal !== undefined) return `${service} refused: ${refusal}`;
  if (error instanceof Ice.LocalException) return `${service} did not answer (${describeFailure(error)})`;
  return describeFailure(error);
}

/** `m:ss` for a duration in ms. */
export function clock(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

/** The tags of a title, as lists and edits show them: `[e2e, two words]` or `(no tags)`. */
export function describeTags(tags: readonly string[]): string {
  return tags.length > 0 ? `[${tags.join(", ")}]` : "(no tags)";
}

/**
 * The order of search results: by name (the catalog answers in no particular order, which changes across
 * restarts), then by id; titles that could not be read (no name) last.
 */
export function compareTitles(a: { id: string; name?: string }, b: { id: string; name?: string }): number {
  if (a.name !== b.name) {
    if (a.name === undefined || b.name === undefined) return a.name === undefined ? 1 : -1;
    const byName = a.name.localeCompare(b.name);
    if (byName !== 0) return byName;
  }
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** "1 title" / "2 titles". */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
