/**
 * Keeps the engine's generating sequences in step, so that each decode
 * carries one token of every stream (llama-server decodes all its slots in
 * one batch per step).
 *
 * Why it is needed: node-llama-cpp samples each sequence of a batch with its
 * own asynchronous call and lets a sequence queue its next token as soon as
 * its own sample is back. The batch loop then often decodes the first
 * sequence alone while the others are still being sampled, and from there
 * the streams alternate, one token per decode, for the rest of the request:
 * 4 concurrent streams got no more throughput than 1. With the gate, a
 * sequence asks for its next token only when every sequence of the step has
 * its token, so all requests are queued in the same tick and decoded together.
 *
 * Members are the sequences in their token loop; a member that is busy
 * elsewhere (writing to a slow client) steps `away` so that the others never
 * wait for it, and a member that leaves frees those waiting on it.
 */
export class StepGate {
  private members = 0;
  private away = 0;
  private waiting: Array<() => void> = [];

  /** A sequence enters its token loop (after its prompt is evaluated). */
  join(): void {
    this.members++;
  }

  /** A sequence leaves its token loop, for good. */
  leave(): void {
    this.members--;
    this.check();
  }

  /**
   * Resolves once every present member has arrived in this step. Call it with
   * the token just sampled, before asking for the next one.
   */
  arrive(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiting.push(resolve);
      this.check();
    });
  }

  /** The member does something that may take long; the others go on without it. */
  stepAway(): void {
    this.away++;
    this.check();
  }

  /** The member is back; it takes part from its next `arrive`. */
  stepBack(): void {
    this.away--;
  }

  private check(): void {
    if (this.waiting.length === 0 || this.waiting.length < this.members - this.away) return;
    const release = this.waiting;
    this.waiting = [];
    for (const resolve of release) resolve();
  }
}
