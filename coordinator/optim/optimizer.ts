/**
 * The optimizers of the trained parameters (A_t for k and v, head t), in float64 on the coordinator, with
 * torch.optim's update rules: weight decay added to the gradient (not decoupled).
 */
/** One learning rate for every tensor, or one per tensor (torch's parameter groups). */
export type LearningRates = number | readonly number[];

function rateOf(lr: LearningRates, j: number): number {
  return typeof lr === "number" ? lr : lr[j];
}

export interface Optimizer {
  /** Updates `params` in place from `grads` (same layout, one Float64Array per parameter tensor). */
  step(params: Float64Array[], grads: Float64Array[], lr: LearningRates): void;
  /** Everything a resume needs, by name. */
  state(): Record<string, Float64Array>;
  load(state: Record<string, Float64Array>): void;
}

export class Adam implements Optimizer {
  private steps = 0;
  private m: Float64Array[] = [];
  private v: Float64Array[] = [];

  constructor(
    private readonly weightDecay: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-8,
  ) {}

  step(params: Float64Array[], grads: Float64Array[], lr: LearningRates): void {
    if (typeof lr !== "number" && lr.length !== params.length)
      throw new RangeError(`Adam.step: ${lr.length} learning rates for ${params.length} tensors`);
    if (this.m.length === 0) {
      this.m = params.map((p) => new Float64Array(p.length));
      this.v = params.map((p) => new Float64Array(p.length));
    }
    this.steps++;
    const { beta1, beta2, eps, weightDecay } = this;
    const bc1 = 1 - beta1 ** this.steps;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.steps);
    for (let j = 0; j < params.length; j++) {
      const stepSize = rateOf(lr, j) / bc1;
      const p = params[j];
      const g = grads[j];
      const m = this.m[j];
      const v = this.v[j];
      for (let i = 0; i < p.length; i++) {
        const gi = weightDecay !== 0 ? g[i] + weightDecay * p[i] : g[i];
        m[i] = beta1 * m[i] + (1 - beta1) * gi;
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
        p[i] -= (stepSize * m[i]) / (Math.sqrt(v[i]) / bc2Sqrt + eps);
      }
    }
  }

  state(): Record<string, Float64Array> {
    const out: Record<string, Float64Array> = { steps: Float64Array.of(this.steps) };
    this.m.forEach((m, j) => {
      out[`m.${j}`] = m;
      out[`v.${j}`] = this.v[j];
    });
    return out;
  }

  load(state: Record<string, Float64Array>): void {
    this.steps = state.steps?.[0] ?? 0;
    this.m = [];
    this.v = [];
    for (let j = 0; state[`m.${j}`]; j++) {
      this.m.push(Float64Array.from(state[`m.${j}`]));
      this.v.push(Float64Array.from(state[`v.${j}`]));
    }
  }
}

/** torch.optim.SGD with momentum 0.9 and no dampening: the buffer starts as the first gradient. */
export class Sgd implements Optimizer {
  private buf: Float64Array[] = [];

  constructor(
    private readonly weightDecay: number,
    private readonly momentum = 0.9,
  ) {}

  step(params: Float64Array[], grads: Float64Array[], lr: LearningRates): void {
    if (typeof lr !== "number" && lr.length !== params.length)
      throw new RangeError(`Sgd.step: ${lr.length} learning rates for ${params.length} tensors`);
    const first = this.buf.length === 0;
    if (first) this.buf = params.map((p) => new Float64Array(p.length));
    for (let j = 0; j < params.length; j++) {
      const p = params[j];
      const g = grads[j];
      const b = this.buf[j];
      const rate = rateOf(lr, j);
      for (let i = 0; i < p.length; i++) {
        const gi = this.weightDecay !== 0 ? g[i] + this.weightDecay * p[i] : g[i];
        b[i] = first ? gi : this.momentum * b[i] + gi;
        p[i] -= rate * b[i];
      }
    }
  }

  state(): Record<string, Float64Array> {
    const out: Record<string, Float64Array> = {};
    this.buf.forEach((b, j) => {
      out[`momentum.${j}`] = b;
    });
    return out;
  }

  load(state: Record<string, Float64Array>): void {
    this.buf = [];
    for (let j = 0; state[`momentum.${j}`]; j++) this.buf.push(Float64Array.from(state[`momentum.${j}`]));
  }
}

export function makeOptimizer(kind: "adam" | "sgd", weightDecay: number): Optimizer {
  return kind === "adam" ? new Adam(weightDecay) : new Sgd(weightDecay);
}
