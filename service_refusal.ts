/**
 * A service's refusal in words, as the terminal client and the web page show
 * it. Where the spec's Slice has no exception for a case (a catalog limit, a
 * full disk, a UDP port out of range), a service raises `Ice.UnknownException`
 * with the reason as one line of text. A servant that crashes reaches the
 * caller as the same exception, with a stack trace: the one line is what tells
 * a refusal apart.
 *
 * Only "ice" is imported, so the page's bundle (web/app.ts) uses this too.
 *
 * @module
 */
import { Ice } from "ice";

/** The first line of an `Ice.UnknownException`'s text, without the error type a servant's failure starts with. */
export function firstLine(unknown: string | undefined): string {
  return (unknown ?? "").split("\n")[0].replace(/^.*?Error: /, "");
}

/**
 * The reason a service gave when it refused a call, or `undefined` if
 * `error` is no such refusal: not an `Ice.UnknownException`, one of its kinds
 * that wrap another exception, or a servant's stack trace.
 *
 * @example refusalReason(new Ice.UnknownException("the title would have 51 tags; at most 50")) // "the title would…"
 */
export function refusalReason(error: unknown): string | undefined {
  if (
    !(error instanceof Ice.UnknownException) || error instanceof Ice.UnknownLocalException ||
    error instanceof Ice.UnknownUserException
  ) return undefined;
  const text = error.unknown ?? "";
  return text === "" || text.includes("\n") ? undefined : firstLine(text);
}
