// The k best of a stream of scored ids: exact top-k, written once for the index's exact scan
// (index/vector-index.ts) and for merging the blocks of ONNX Runtime's k-NN (engine/knn.ts).

export interface Scored {
  id: number;
  score: number;
}

/** Higher score first; equal scores by id, so exact results are deterministic. */
const better = (a: Scored, b: Scored) => b.score - a.score || a.id - b.id;

/** A sorted array of at most k: cheap for the small k of retrieval. */
export class TopK {
  private readonly items: Scored[] = [];
  constructor(readonly k: number) {}

  push(id: number, score: number): void {
    const items = this.items;
    if (items.length === this.k) {
      const worst = items[items.length - 1];
      if (score < worst.score || (score === worst.score && id > worst.id)) return;
      items.pop();
    }
    let i = items.length;
    while (i > 0 && better(items[i - 1], { id, score }) > 0) i--;
    items.splice(i, 0, { id, score });
  }

  result(): Scored[] {
    return [...this.items];
  }
}
