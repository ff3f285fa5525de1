// The gradient checks' one primitive: a central finite difference of the loss in one element of a
// variable, compared with the analytic gradient (the tests' independent reference for autodiff).
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';

/** Asserts that d loss / d v[i] by central differences (step eps) matches `analytic` within 2e-3 relative. */
export function assertFiniteDifference(
  v: tf.Variable,
  i: number,
  loss: () => tf.Scalar,
  analytic: number,
  label: string,
  eps = 1e-2,
): void {
  const shift = (delta: number) => {
    const d = v.dataSync().slice();
    d[i] += delta;
    v.assign(tf.tensor(d, v.shape));
    return loss().dataSync()[0];
  };
  const numeric = (shift(eps) - shift(-2 * eps)) / (2 * eps);
  shift(eps); // back to the original value
  assert.ok(
    Math.abs(numeric - analytic) <= 2e-3 * Math.max(1, Math.abs(numeric)),
    `${label}[${i}]: numeric ${numeric}, analytic ${analytic}`,
  );
}
