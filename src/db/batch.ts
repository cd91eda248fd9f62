/**
 * Runs concurrent single calls as few batched ones. A call goes out at once while fewer than `concurrency` batches
 * are in flight (so alone, it waits for nothing); under load, calls gather while the batches in flight run, and each
 * finishing batch sends the next with whatever gathered (up to `maxItems`, and `maxWeight` unless one item alone
 * weighs more). `run` settles each item on its own, so one bad item fails only its own call.
 */
export interface BatchLimits<In> {
  concurrency: number;
  maxItems: number;
  maxWeight: number;
  weight(item: In): number;
}

interface Waiting<In, Out> {
  item: In;
  resolve(value: Out): void;
  reject(reason: unknown): void;
}

export class Batcher<In, Out> {
  private readonly waiting: Waiting<In, Out>[] = [];
  private inFlight = 0;

  constructor(
    private readonly run: (items: In[]) => Promise<PromiseSettledResult<Out>[]>,
    private readonly limits: BatchLimits<In>,
  ) {}

  call(item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      this.send();
    });
  }

  private send(): void {
    while (this.inFlight < this.limits.concurrency && this.waiting.length > 0) {
      let count = 0;
      let weight = 0;
      while (count < this.waiting.length && count < this.limits.maxItems) {
        weight += this.limits.weight(this.waiting[count]!.item);
        if (count > 0 && weight > this.limits.maxWeight) break;
        count++;
      }
      const batch = this.waiting.splice(0, count);
      this.inFlight++;
      this.run(batch.map((w) => w.item))
        .then(
          (results) => batch.forEach((w, i) => {
            const result = results[i];
            if (result?.status === 'fulfilled') w.resolve(result.value);
            else w.reject(result ? result.reason : new Error('batch returned no result for an item'));
          }),
          (err: unknown) => batch.forEach((w) => w.reject(err)),
        )
        .finally(() => {
          this.inFlight--;
          this.send();
        });
    }
  }
}
