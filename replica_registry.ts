/**
 * How replicas of one kind find each other at start, before discovery has
 * heard anyone announce: each one subscribes to an IceStorm topic that nothing
 * is published on, under the identity `<category>/<its service's proxy>`, and
 * the topic's subscriber list is the registry (IceStorm lists subscribers by
 * identity only, hence the proxy in the name).
 *
 * @module
 */
import { Ice } from "ice";
import { describeError } from "./log.ts";
import type { ServiceContext } from "./service.ts";

/** The replicas of one kind listed on one topic, as seen by one of them. */
export class ReplicaRegistry {
  readonly #context: ServiceContext;
  readonly #topicName: string;
  /** This replica's entry: category, and its service's proxy as the name. */
  readonly #identity: Ice.Identity;
  #entry: Ice.ObjectPrx | undefined;

  /**
   * @param topicName the registry's topic
   * @param category the identity category of its entries
   * @param service this replica's service object (its proxy names the entry)
   */
  constructor(context: ServiceContext, topicName: string, category: string, service: Ice.ObjectPrx) {
    this.#context = context;
    this.#topicName = topicName;
    this.#identity = new Ice.Identity(context.communicator.proxyToString(service), category);
  }

  /** This replica's name in the registry: its service's proxy, as a string. */
  get name(): string {
    return this.#identity.name;
  }

  /** Adds `servant` as this replica's entry, the object its peers call; returns its proxy. */
  add(servant: Ice.Object): Ice.ObjectPrx {
    this.#entry = this.#context.adapter.add(servant, this.#identity);
    return this.#entry;
  }

  /** Lists this replica on the topic, for good (the event channel renews it; it ends with the channel). */
  async subscribe(): Promise<void> {
    await this.#context.events.subscribe(this.#topicName, this.#entry!);
  }

  /**
   * The other replicas listed now: name -> their service's proxy (the name
   * read as one) and their entry. Subscribers of other categories, and names
   * that are not proxies, are left out. Anyone can subscribe: a caller
   * believes a listed replica only once it has proven itself (trust.ts).
   *
   * @throws Ice.LocalException when IceStorm cannot be reached
   */
  async list(): Promise<Map<string, { service: Ice.ObjectPrx; entry: Ice.ObjectPrx }>> {
    const { communicator, events, logger } = this.#context;
    const subscribers = await (await events.topic(this.#topicName)).getSubscribers();
    const replicas = new Map<string, { service: Ice.ObjectPrx; entry: Ice.ObjectPrx }>();
    for (const identity of subscribers) {
      if (identity.category !== this.#identity.category || identity.name === this.name) continue;
      try {
        const service = communicator.stringToProxy(identity.name);
        replicas.set(identity.name, { service, entry: service.ice_identity(identity) });
      } catch (error) {
        logger.debug(`ignoring subscriber ${identity.name} of ${this.#topicName}: ${describeError(error)}`);
      }
    }
    return replicas;
  }

  /** Takes `entry` (gone) off the topic; a live replica lists itself again at its next renewal. */
  async remove(entry: Ice.ObjectPrx): Promise<void> {
    try {
      await (await this.#context.events.topic(this.#topicName)).unsubscribe(entry);
    } catch (error) {
      this.#context.logger.debug(
        `cannot take ${entry.ice_getIdentity().name} off ${this.#topicName}: ${describeError(error)}`,
      );
    }
  }
}
