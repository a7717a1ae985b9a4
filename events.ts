/**
 * IceStorm topics for IceFlix: publishing events and staying subscribed.
 *
 * IceStorm is a separate process that may be down, or restarted, while the
 * services keep running. This module hides that: a publisher finds its topic
 * again after a restart, and subscriptions are renewed on every
 * {@linkcode EventChannel.maintain} tick, so a service re-subscribes by itself.
 * An outage is logged once when it starts and once when it ends.
 *
 * @module
 */
import { Ice, IceStorm } from "ice";
import { describeError, type Logger } from "./log.ts";

/** The proxy of IceStorm's TopicManager when `IceStorm.TopicManager.Proxy` is not set. */
export const DEFAULT_TOPIC_MANAGER = "IceStorm/TopicManager:tcp -h 127.0.0.1 -p 10000";

/**
 * The topics of the IceFlix specification. Every program names them from
 * here, so a typo cannot split one topic into two.
 */
export const TOPICS = {
  /** `ServiceAvailability` events: services announce themselves (discovery.ts). */
  serviceAvailability: "ServiceAvailability",
  /** `TokenRevocation.revoke(token)` events: the Authenticators announce expired tokens. */
  authenticationStatus: "AuthenticationStatus",
  /** `StreamAnnounces.newMedia` events: the streaming services announce their videos. */
  mediaAnnouncements: "MediaAnnouncements",
} as const;

/** How long a call to IceStorm may take before it counts as failed (ms). */
const ICESTORM_CALL_TIMEOUT = 3000;

/** A subscription kept alive by {@linkcode EventChannel.maintain}. */
interface Subscription {
  topicName: string;
  subscriber: Ice.ObjectPrx;
  active: boolean;
  /** Whether the first attempt is over: a subscription made after it has missed events. */
  firstAttemptDone: boolean;
  onLost?: () => void;
}

/**
 * The IceStorm side of one process: gets or creates topics, hands out
 * publishers and keeps subscriptions alive.
 */
export class EventChannel {
  readonly #communicator: Ice.Communicator;
  readonly #logger: Logger;
  readonly #topics = new Map<string, IceStorm.TopicPrx>();
  readonly #publishers = new Map<string, Ice.ObjectPrx>();
  readonly #subscriptions: Subscription[] = [];
  #reachable = true;

  /** The TopicManager comes from property `IceStorm.TopicManager.Proxy`. */
  constructor(communicator: Ice.Communicator, logger: Logger) {
    this.#communicator = communicator;
    this.#logger = logger;
  }

  /** The TopicManager, with a bounded timeout on every call. */
  #topicManager(): IceStorm.TopicManagerPrx {
    const text = this.#communicator.getProperties()
      .getPropertyWithDefault("IceStorm.TopicManager.Proxy", DEFAULT_TOPIC_MANAGER);
    return IceStorm.TopicManagerPrx.uncheckedCast(
      this.#communicator.stringToProxy(text).ice_invocationTimeout(ICESTORM_CALL_TIMEOUT),
    );
  }

  /** The topic called `name`, created if it does not exist yet. */
  async topic(name: string): Promise<IceStorm.TopicPrx> {
    const known = this.#topics.get(name);
    if (known) return known;
    const manager = this.#topicManager();
    let topic: IceStorm.TopicPrx;
    try {
      topic = await manager.retrieve(name);
    } catch (error) {
      if (!(error instanceof IceStorm.NoSuchTopic)) throw error;
      try {
        topic = await manager.create(name);
      } catch (raced) {
        // Another process created it between our two calls.
        if (!(raced instanceof IceStorm.TopicExists)) throw raced;
        topic = await manager.retrieve(name);
      }
    }
    topic = IceStorm.TopicPrx.uncheckedCast(topic.ice_invocationTimeout(ICESTORM_CALL_TIMEOUT));
    this.#topics.set(name, topic);
    return topic;
  }

  /**
   * Publishes one event on topic `topicName`: `send` gets the topic's
   * publisher proxy (cast it to the topic's interface) and makes the call.
   * After a failure the topic is looked up again and the event sent once
   * more, which covers an IceStorm restart. Resolves to whether the event was
   * delivered to IceStorm; never rejects (the outage is logged).
   */
  async publish(topicName: string, send: (publisher: Ice.ObjectPrx) => PromiseLike<unknown>): Promise<boolean> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        let publisher = this.#publishers.get(topicName);
        if (!publisher) {
          publisher = (await (await this.topic(topicName)).getPublisher())
            .ice_invocationTimeout(ICESTORM_CALL_TIMEOUT);
          this.#publishers.set(topicName, publisher);
        }
        await send(publisher);
        this.#markReachable();
        return true;
      } catch (error) {
        this.#topics.delete(topicName);
        this.#publishers.delete(topicName);
        if (attempt === 1 || !(error instanceof Ice.LocalException)) this.#markUnreachable(error);
        if (!(error instanceof Ice.LocalException)) return false;
      }
    }
    return false;
  }

  /**
   * Subscribes `subscriber` to topic `topicName` and keeps it subscribed:
   * every {@linkcode maintain} call renews the subscription, so it survives
   * IceStorm restarts and IceStorm dropping a subscriber it could not reach.
   * Resolves once the first attempt is done (failure included: it is retried).
   *
   * @param onLost called when a renewal finds the subscription gone and makes it again, or makes it at last after
   *   the first attempt failed: the events published meanwhile never reached `subscriber`
   */
  async subscribe(topicName: string, subscriber: Ice.ObjectPrx, onLost?: () => void): Promise<void> {
    const subscription: Subscription = { topicName, subscriber, active: true, firstAttemptDone: false, onLost };
    this.#subscriptions.push(subscription);
    await this.#renew(subscription);
    subscription.firstAttemptDone = true;
  }

  /** Ends the subscription of `subscriber` to `topicName`, here and in IceStorm. */
  async unsubscribe(topicName: string, subscriber: Ice.ObjectPrx): Promise<void> {
    const index = this.#subscriptions.findIndex((subscription) =>
      subscription.topicName === topicName && subscription.subscriber.equals(subscriber)
    );
    if (index < 0) return;
    const [subscription] = this.#subscriptions.splice(index, 1);
    subscription.active = false;
    try {
      await (await this.topic(topicName)).unsubscribe(subscriber);
    } catch (error) {
      this.#logger.debug(`cannot unsubscribe from ${topicName}: ${describeError(error)}`);
    }
  }

  /** Destroys topic `name` in IceStorm (a topic that is gone already is fine). */
  async destroyTopic(name: string): Promise<void> {
    try {
      await (await this.topic(name)).destroy();
    } catch (error) {
      if (!(error instanceof IceStorm.NoSuchTopic || error instanceof Ice.ObjectNotExistException)) {
        this.#logger.debug(`cannot destroy topic ${name}: ${describeError(error)}`);
      }
    } finally {
      this.#topics.delete(name);
      this.#publishers.delete(name);
    }
  }

  /** Renews every subscription; call it periodically. Never rejects. */
  async maintain(): Promise<void> {
    await Promise.all(this.#subscriptions.map((subscription) => this.#renew(subscription)));
  }

  /** Unsubscribes everything this channel subscribed (at shutdown). */
  async close(): Promise<void> {
    await Promise.all(
      [...this.#subscriptions].map(({ topicName, subscriber }) => this.unsubscribe(topicName, subscriber)),
    );
  }

  async #renew(subscription: Subscription): Promise<void> {
    try {
      const topic = await this.topic(subscription.topicName);
      if (!subscription.active) return;
      // A twoway subscriber: IceStorm learns of each delivery failure (and drops a subscriber that is gone).
      // No "ordered" QoS: it would allow one event in flight at a time, and no IceFlix topic needs ordering.
      // Subscribing again an existing subscriber is refused, and that is fine.
      await topic.subscribeAndGetPublisher(new Map(), subscription.subscriber);
      this.#logger.debug(`subscribed to ${subscription.topicName}`);
      this.#markReachable();
      if (subscription.firstAttemptDone) subscription.onLost?.();
    } catch (error) {
      if (error instanceof IceStorm.AlreadySubscribed) {
        this.#markReachable();
        return;
      }
      this.#topics.delete(subscription.topicName);
      this.#publishers.delete(subscription.topicName);
      this.#markUnreachable(error);
    }
  }

  #markUnreachable(error: unknown): void {
    if (!this.#reachable) return;
    this.#reachable = false;
    this.#logger.warn(`IceStorm unreachable (${describeError(error)}); retrying until it is back`);
  }

  #markReachable(): void {
    if (this.#reachable) return;
    this.#reachable = true;
    this.#logger.info("IceStorm reachable again");
  }
}
