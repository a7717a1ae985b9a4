/**
 * TCP_NODELAY on the connections Ice for JavaScript makes, as Ice for C++
 * does on every TCP socket; applied when this module is first imported
 * (acceptor.ts does, so every IceFlix process has it). The connections the
 * acceptor takes in get it from their listener (acceptor.ts).
 *
 * Why: the pinned ice@3.7.110 connects with `net.createConnection` and never
 * sets the option, so Nagle's algorithm holds each small message written
 * while an earlier one is still unacknowledged. Oneway messages in a row
 * (publishes to IceStorm) or calls made together on one connection then wait
 * for the peer's acknowledgement, which a peer with nothing to answer delays
 * by up to 40 ms.
 *
 * @module
 */
import { Ice } from "ice";
import type net from "node:net";

/** The parts of Ice's TCP transceiver (`TcpTransceiver`) used here. */
interface TcpTransceiver {
  /** The socket; null until the first `initialize` of an outgoing connection creates it. */
  _fd: net.Socket | null;
  initialize(...args: unknown[]): number;
}

const TcpTransceiverClass =
  (Ice as unknown as { TcpTransceiver: { prototype: TcpTransceiver; createOutgoing?: unknown } })
    .TcpTransceiver;
const transceiver = TcpTransceiverClass.prototype;
const initialize = transceiver.initialize;
if (typeof initialize !== "function" || typeof TcpTransceiverClass.createOutgoing !== "function") {
  throw new Error("ice_tcp.ts: this ice package is not the 3.7.110 it was written for");
}
transceiver.initialize = function (this: TcpTransceiver, ...args: unknown[]): number {
  const connecting = this._fd === null;
  try {
    return initialize.apply(this, args);
  } finally {
    // node:net applies the option once the connection is established.
    if (connecting && this._fd !== null) this._fd.setNoDelay(true);
  }
};
