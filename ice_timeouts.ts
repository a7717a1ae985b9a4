/**
 * A fix to the pinned ice@3.7.110 runtime, applied when this module is first
 * imported (service.ts does, so every IceFlix process has it).
 *
 * A twoway call through a proxy with an invocation timeout
 * (`ice_invocationTimeout`, which every call between IceFlix services has)
 * schedules a timer, and Ice cancels it only when a oneway call is sent or a
 * call fails (OutgoingAsync.js: `markSent`, `markFinishedEx`), not when the
 * reply arrives. So each answered call still fires its timer `timeout` ms
 * later and builds an `InvocationTimeoutException`, stack trace included,
 * for a call long done, and the call stays in memory until then. Profiled
 * with 3 Authenticator replicas, that was a fifth of their CPU. Here the
 * timer is also cancelled when the call finishes with a reply.
 *
 * @module
 */
import { Ice } from "ice";

/** The parts of Ice's proxy invocations (`ProxyOutgoingAsyncBase`) used here. */
interface ProxyInvocation {
  _timeoutToken?: number;
  _instance: { timer(): { cancel(token: number): boolean } };
  markFinished(ok: boolean, completed?: unknown): void;
}

/** ProxyOutgoingAsyncBase, not exported by the package, is the parent of `Ice.OutgoingAsync`. */
const invocation: ProxyInvocation = Object.getPrototypeOf(
  (Ice as unknown as { OutgoingAsync: { prototype: object } }).OutgoingAsync.prototype,
);
const markFinished = invocation.markFinished;
if (typeof markFinished !== "function" || Object.hasOwn(invocation, "markFinished")) {
  throw new Error("ice_timeouts.ts: this ice package is not the 3.7.110 it was written for");
}
invocation.markFinished = function (this: ProxyInvocation, ok: boolean, completed?: unknown): void {
  if (this._timeoutToken !== undefined) this._instance.timer().cancel(this._timeoutToken);
  markFinished.call(this, ok, completed);
};
