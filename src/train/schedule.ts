// Learning rate: linear warm-up from 0 to `lr` over `warmupSteps`, then cosine decay to `minLr`
// at `totalSteps`. Pure, so that resuming at step k gives exactly the rate an unbroken run had.
export function learningRate(step: number, o: { lr: number; minLr: number; warmupSteps: number; totalSteps: number }): number {
  if (o.warmupSteps > 0 && step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  const span = Math.max(1, o.totalSteps - o.warmupSteps);
  const t = Math.min(1, (step - o.warmupSteps) / span);
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * t));
}
