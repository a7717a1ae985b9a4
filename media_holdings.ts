/**
 * Which media a streaming service holds, asked for many ids in one call:
 * facet `IceFlixMedia` of every IceFlix StreamProvider (`slice/media_holdings.ice`).
 *
 * A catalog checks every `newMedia` with the provider it names before it
 * believes it (anyone can publish on IceStorm). One `isAvailable` call per
 * announcement made 100,000 announcements cost 100,000 calls, all in
 * flight at once, and on a busy machine thousands timed out and were lost.
 * {@linkcode AvailabilityChecks} keeps one call in flight per provider and
 * puts every id asked for meanwhile into the next one; a provider without the
 * facet (a spec-only one the operator admitted) is asked with `isAvailable`,
 * a few calls at a time.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
// @ts-types="./slice/media_holdings.d.ts"
import { IceFlixMedia } from "./slice/media_holdings.js";
import { inParallel } from "./in_parallel.ts";

/** The facet of a StreamProvider's object that answers for many ids at once. */
const HOLDINGS_FACET = "IceFlixMedia";

/** Ids asked at most in one call (64-character ids: about 65 KB). */
const MAX_BATCH = 1024;

/** `isAvailable` calls in flight at once to a provider without the facet. */
const SPEC_ONLY_IN_FLIGHT = 16;

/** The facet's servant: `holds` answers for each id what `isAvailable` would. */
class Holdings extends IceFlixMedia.Holdings {
  readonly #holds: (id: string) => boolean;

  constructor(holds: (id: string) => boolean) {
    super();
    this.#holds = holds;
  }

  holdsEach(ids: string[]): boolean[] {
    return ids.map((id) => this.#holds(id));
  }
}

/** Adds facet `IceFlixMedia` to the StreamProvider of `identity`: it answers with `holds` for each id asked. */
export function serveHoldings(
  adapter: Ice.ObjectAdapter,
  identity: Ice.Identity,
  holds: (id: string) => boolean,
): void {
  adapter.addFacet(new Holdings(holds), identity, HOLDINGS_FACET);
}

/** An id waiting to be asked about, with its caller's answer. */
interface Question {
  id: string;
  answer: (holds: boolean) => void;
  fail: (error: unknown) => void;
}

/** The questions for one provider, and how it is asked. */
interface ProviderQueue {
  provider: IceFlix.StreamProviderPrx;
  waiting: Question[];
  /** It has no `IceFlixMedia` facet: asked with `isAvailable`. */
  specOnly: boolean;
}

/** Whether streaming services hold media, asked in batches: one call in flight per provider. */
export class AvailabilityChecks {
  readonly #callTimeout: number;
  /** Provider id -> its questions, while it has some. */
  readonly #queues = new Map<string, ProviderQueue>();

  /** @param callTimeout milliseconds each call may take */
  constructor(callTimeout: number) {
    this.#callTimeout = callTimeout;
  }

  /**
   * Whether provider `providerId` (at `provider`) holds media `id` now.
   *
   * @throws the call's error if the provider cannot be asked (unreachable, timed out, or it answered nonsense)
   */
  holds(providerId: string, provider: IceFlix.StreamProviderPrx, id: string): Promise<boolean> {
    return new Promise((answer, fail) => {
      let queue = this.#queues.get(providerId);
      if (queue) {
        queue.provider = provider;
        queue.waiting.push({ id, answer, fail });
        return;
      }
      queue = { provider, waiting: [{ id, answer, fail }], specOnly: false };
      this.#queues.set(providerId, queue);
      this.#askAll(providerId, queue);
    });
  }

  /** Asks `queue`'s provider about its questions, a batch at a time, until none is left. */
  async #askAll(providerId: string, queue: ProviderQueue): Promise<void> {
    while (queue.waiting.length > 0) {
      const batch = queue.waiting.splice(0, MAX_BATCH);
      const provider = queue.provider.ice_invocationTimeout(this.#callTimeout);
      if (!queue.specOnly) {
        try {
          const answers = await askBatch(provider, batch).catch((error) => {
            // A busy provider, or catalog, may once take longer than a call may: one more try before the ids fail.
            if (error instanceof Ice.TimeoutException) return askBatch(provider, batch);
            throw error;
          });
          batch.forEach((question, index) => question.answer(answers[index]));
          continue;
        } catch (error) {
          if (!(error instanceof Ice.FacetNotExistException || error instanceof Ice.OperationNotExistException)) {
            batch.forEach((question) => question.fail(error));
            continue;
          }
          queue.specOnly = true;
        }
      }
      await askEach(provider, batch);
    }
    this.#queues.delete(providerId);
  }
}

/** Asks `provider` about every question in one call to its facet. */
async function askBatch(provider: IceFlix.StreamProviderPrx, questions: Question[]): Promise<boolean[]> {
  const answers = await IceFlixMedia.HoldingsPrx.uncheckedCast(provider, HOLDINGS_FACET)
    .holdsEach(questions.map(({ id }) => id));
  if (answers.length !== questions.length) {
    throw new Error(`${answers.length} answers to ${questions.length} ids: nonsense`);
  }
  return answers;
}

/** Asks `provider` about each question with `isAvailable`, a few calls in flight at once. */
function askEach(provider: IceFlix.StreamProviderPrx, questions: Question[]): Promise<void> {
  return inParallel(
    questions,
    SPEC_ONLY_IN_FLIGHT,
    (question) => provider.isAvailable(question.id).then(question.answer, question.fail),
  );
}
