// The live ids of an index and their labels, kept in memory for search filters and counts.

/** Ids are dense from 1, so per-id state lives in typed arrays rather than Maps: 5 bytes per id. */
export class LiveSet {
  live = new Uint8Array(0);
  labels = new Int32Array(0);
  size = 0;
  readonly perLabel = new Map<number, number>();

  has(id: number): boolean {
    return this.live[id] === 1;
  }

  add(id: number, label: number): void {
    if (id >= this.live.length) {
      const n = Math.max(id + 1, Math.ceil(this.live.length * 1.5), 1024);
      const live = new Uint8Array(n),
        labels = new Int32Array(n);
      live.set(this.live);
      labels.set(this.labels);
      this.live = live;
      this.labels = labels;
    }
    if (this.live[id] === 1) return;
    this.live[id] = 1;
    this.labels[id] = label;
    this.size++;
    this.perLabel.set(label, (this.perLabel.get(label) ?? 0) + 1);
  }

  delete(id: number): boolean {
    if (this.live[id] !== 1) return false;
    this.live[id] = 0;
    this.size--;
    const label = this.labels[id];
    const n = this.perLabel.get(label)! - 1;
    if (n === 0) this.perLabel.delete(label);
    else this.perLabel.set(label, n);
    return true;
  }

  ids(): number[] {
    const out: number[] = [];
    for (let id = 0; id < this.live.length; id++) if (this.live[id] === 1) out.push(id);
    return out;
  }
}
