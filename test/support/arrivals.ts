/** A list that records what an emulator receives, and lets a test wait for a matching arrival. */
import { EventEmitter } from 'node:events';

export class Arrivals<T> {
  readonly items: T[] = [];
  private readonly events = new EventEmitter();

  constructor(private readonly describe: (items: T[]) => string) {}

  add(item: T): void {
    this.items.push(item);
    this.events.emit('item', item);
  }

  waitFor(predicate: (item: T) => boolean, timeoutMs: number): Promise<T> {
    const already = this.items.find(predicate);
    if (already) return Promise.resolve(already);
    return new Promise((resolve, reject) => {
      const onItem = (item: T) => {
        if (!predicate(item)) return;
        clearTimeout(timer);
        this.events.off('item', onItem);
        resolve(item);
      };
      const timer = setTimeout(() => {
        this.events.off('item', onItem);
        reject(new Error(`nothing matching arrived within ${timeoutMs} ms (received: ${this.describe(this.items)})`));
      }, timeoutMs);
      this.events.on('item', onItem);
    });
  }
}
