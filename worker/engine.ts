/**
 * The worker's compute: covariance pass, training step and evaluation over micro-shards, for whatever
 * transport carries the requests. Holds only caches keyed by versions the coordinator gave.
 */
import { randomUUID } from "node:crypto";
import * as tf from "@tensorflow/tfjs-core";
import { concatHeads, type Head } from "../common/adapters.js";
import {
  type CovarianceRequest,
  type CovarianceResult,
  type EvalRequest,
  type EvalResult,
  type MicroShard,
  PROTOCOL_VERSION,
  type SetupReply,
  type SetupRequest,
  StaleVersionError,
  type TaskState,
  type TrainParams,
  type TrainStepRequest,
  type TrainStepResult,
  type WorkerClient,
} from "../common/protocol.js";
import { type BackendInfo, selectBackend } from "./backend.js";
import type { LoaderDataset } from "./data/open_dataset.js";
import { openDataset } from "./data/open_dataset.js";
import { covarianceSum } from "./model/covariance.js";
import { imagesToPatches } from "./model/layers.js";
import { loadWeights } from "./model/load_weights.js";
import { lossAndGrads } from "./model/objective.js";
import { InfLoraVit } from "./model/vit.js";

export class WorkerSetupError extends Error {
  override readonly name = "WorkerSetupError";
}

interface LiveState {
  readonly state: TaskState;
  readonly BT?: tf.Tensor2D[];
  readonly heads?: { w: tf.Tensor2D; b: tf.Tensor1D };
}

interface LiveParams {
  readonly version: number;
  readonly AkT: tf.Tensor2D[];
  readonly AvT: tf.Tensor2D[];
  readonly headW: tf.Tensor2D;
  readonly headB: tf.Tensor1D;
}

/** Also the in-process transport: the coordinator calls it directly as a WorkerClient. */
export class WorkerEngine implements WorkerClient {
  readonly workerId = randomUUID();
  readonly name: string;
  private model?: InfLoraVit;
  private dataset?: LoaderDataset;
  private setupReq?: SetupRequest;
  private readonly states = new Map<number, TaskState>();
  private live?: LiveState;
  /** The finished-adapter set currently folded into the model, by state version. */
  private foldedFrom?: TaskState;
  private params?: LiveParams;

  constructor(
    private readonly options: { backend?: string; gpu?: number; dataThreads?: number; name?: string } = {},
  ) {
    this.name = options.name ?? `in-process:${this.workerId.slice(0, 8)}`;
  }

  async setup(req: SetupRequest): Promise<SetupReply> {
    if (req.protocolVersion !== PROTOCOL_VERSION) {
      throw new WorkerSetupError(
        `protocol version ${req.protocolVersion} requested; this worker speaks ${PROTOCOL_VERSION}`,
      );
    }
    const backend = await selectBackend({ backend: this.options.backend, gpu: this.options.gpu });
    // Only the very same request keeps what is loaded: the same run and weights with other model or data
    // options (a resumed run whose config changed) must not compute with the old ones.
    if (this.setupReq && JSON.stringify(this.setupReq) === JSON.stringify(req)) {
      return this.reply(backend);
    }
    this.dispose();
    const weights = await loadWeights(req.weightsPath, { ...req.model });
    if (weights.fingerprint !== req.weightsFingerprint) {
      throw new WorkerSetupError(
        `${req.weightsPath}: base weights differ from the coordinator's (sha256 ${weights.fingerprint}, expected ${req.weightsFingerprint})`,
      );
    }
    this.model = new InfLoraVit(weights.cfg, weights.tensors);
    this.dataset = await openDataset({ ...req.data, threads: this.options.dataThreads ?? req.data.threads });
    this.setupReq = req;
    return this.reply(backend);
  }

  private reply(backend: BackendInfo): SetupReply {
    return {
      workerId: this.workerId,
      protocolVersion: PROTOCOL_VERSION,
      weightsFingerprint: this.setupReq!.weightsFingerprint,
      backend: backend.name,
      device: backend.device,
      ...(backend.adapter ? { adapter: backend.adapter } : {}),
    };
  }

  async setTaskState(state: TaskState): Promise<void> {
    this.states.set(state.version, state);
    // Keep the two newest: a late request for the previous version may still arrive.
    for (const v of [...this.states.keys()].sort((a, b) => a - b).slice(0, -2)) this.states.delete(v);
  }

  async covariance(req: CovarianceRequest): Promise<CovarianceResult[]> {
    const model = await this.activate(req.stateVersion);
    const D = model.cfg.embedDim;
    const out: CovarianceResult[] = [];
    for (const shard of req.shards) {
      const n = shard.samples.length;
      const step = req.microBatch && req.microBatch > 0 ? req.microBatch : n;
      // float64 across the shard's forward passes: its sum does not depend on how the shard is cut.
      const acc = Array.from({ length: model.depth }, () => new Float64Array(D * D));
      let tokens = 0;
      const part = (s: number): MicroShard => ({
        ...shard,
        samples: shard.samples.subarray(s, Math.min(s + step, n)),
      });
      for (let s = 0; s < n; s += step) {
        if (s + step < n) this.prefetch(part(s + step));
        const { patches, count } = await this.loadShard(part(s));
        // Every block's xᵀx stacked on the device and read back once per forward pass.
        const stacked = tf.tidy(() => {
          const blocks: tf.Tensor2D[] = new Array(model.depth);
          const x = tf.tensor2d(patches, [count * this.patchesPerImage(), this.patchLen()]);
          model.features(x, count, {
            collect: (i, h) => {
              blocks[i] = covarianceSum(h);
            },
          });
          return tf.stack(blocks);
        });
        const v = (await stacked.data()) as Float32Array;
        stacked.dispose();
        acc.forEach((a, i) => {
          const block = v.subarray(i * D * D, (i + 1) * D * D);
          for (let k = 0; k < block.length; k++) a[k] += block[k];
        });
        tokens += count * (this.patchesPerImage() + 1);
      }
      out.push({ index: shard.index, tokens, sums: acc.map((a) => Float32Array.from(a)) });
    }
    return out;
  }

  async trainStep(req: TrainStepRequest): Promise<TrainStepResult[]> {
    const model = await this.activate(req.stateVersion);
    const live = this.live!;
    if (!live.BT) throw new Error(`state version ${req.stateVersion} has no adapter under training`);
    const params = this.setParams(req.params);
    const out: TrainStepResult[] = [];
    for (const [k, shard] of req.shards.entries()) {
      if (!shard.targets) throw new Error(`training shard ${shard.index} carries no targets`);
      if (k + 1 < req.shards.length) this.prefetch(req.shards[k + 1]);
      const { patches, count } = await this.loadShard(shard);
      out.push({
        index: shard.index,
        count,
        ...(await lossAndGrads(model, patches, count, shard.targets, live.BT, params)),
      });
    }
    return out;
  }

  async evaluate(req: EvalRequest): Promise<EvalResult[]> {
    const model = await this.activate(req.stateVersion);
    const features = req.output === "features";
    const heads = this.live!.heads;
    if (!heads && !features) throw new Error(`state version ${req.stateVersion} has no heads to evaluate`);
    const out: EvalResult[] = [];
    for (const [k, shard] of req.shards.entries()) {
      if (k + 1 < req.shards.length) this.prefetch(req.shards[k + 1]);
      const { patches, count } = await this.loadShard(shard);
      const logits = tf.tidy(() => {
        const x = tf.tensor2d(patches, [count * this.patchesPerImage(), this.patchLen()]);
        const f = model.features(x, count);
        return heads && !features ? tf.add(tf.matMul(f, heads.w, false, true), heads.b) : f;
      });
      const values = (await logits.data()) as Float32Array;
      logits.dispose();
      out.push({ index: shard.index, logits: values });
    }
    return out;
  }

  async close(): Promise<void> {
    this.dispose();
  }

  /** Makes the model match a state version: folds its finished adapters, uploads its B and heads. */
  private async activate(version: number): Promise<InfLoraVit> {
    const model = this.model;
    if (!model) throw new WorkerSetupError("worker used before setup");
    const state = this.states.get(version);
    // The object, not only its number: a state sent again under the same version replaces the live one.
    if (state && this.live?.state === state) return model;
    if (!state) throw new StaleVersionError("state", version);
    this.disposeLive();
    if (!this.foldedFrom || !sameAdapters(this.foldedFrom, state)) {
      await model.setFinishedAdapters(state.finished);
      this.foldedFrom = state;
    }
    const D = model.cfg.embedDim;
    const BT = state.currentB?.B.map((b) =>
      tf.tidy(() => tf.transpose(tf.tensor2d(b, [state.currentB!.rank, D])) as tf.Tensor2D),
    );
    this.live = {
      state,
      BT,
      heads: state.heads.length ? headTensors(concatHeads(state.heads, D), D) : undefined,
    };
    return model;
  }

  private setParams(p: TrainParams | { version: number }): LiveParams {
    if (this.params?.version === p.version) return this.params;
    if (!("Ak" in p)) throw new StaleVersionError("params", p.version);
    this.disposeParams();
    const D = this.model!.cfg.embedDim;
    const rank = p.Ak[0].length / D;
    const aT = (a: Float32Array) => tf.tidy(() => tf.transpose(tf.tensor2d(a, [D, rank])) as tf.Tensor2D);
    this.params = {
      version: p.version,
      AkT: p.Ak.map(aT),
      AvT: p.Av.map(aT),
      headW: tf.tensor2d(p.head.weight, [p.head.classes, D]),
      headB: tf.tensor1d(p.head.bias),
    };
    return this.params;
  }

  private patchesPerImage(): number {
    const c = this.model!.cfg;
    return (c.imgSize / c.patchSize) ** 2;
  }

  private patchLen(): number {
    const c = this.model!.cfg;
    return c.inChans * c.patchSize * c.patchSize;
  }

  /** Starts decoding a shard on the loader threads while the backend computes the current one. */
  private prefetch(shard: MicroShard): void {
    this.dataset!.prefetch(shard.split, Array.from(shard.samples), {
      augment: shard.augment !== undefined,
      key: shard.augment,
    });
  }

  private async loadShard(shard: MicroShard): Promise<{ patches: Float32Array; count: number }> {
    const cfg = this.model!.cfg;
    const images = await this.dataset!.load(shard.split, Array.from(shard.samples), {
      augment: shard.augment !== undefined,
      key: shard.augment,
    });
    const count = shard.samples.length;
    return { patches: imagesToPatches(images, count, cfg.inChans, cfg.imgSize, cfg.patchSize), count };
  }

  private disposeLive(): void {
    if (!this.live) return;
    for (const t of this.live.BT ?? []) t.dispose();
    if (this.live.heads) tf.dispose([this.live.heads.w, this.live.heads.b]);
    this.live = undefined;
  }

  private disposeParams(): void {
    if (!this.params) return;
    tf.dispose([...this.params.AkT, ...this.params.AvT, this.params.headW, this.params.headB]);
    this.params = undefined;
  }

  private dispose(): void {
    this.disposeLive();
    this.disposeParams();
    this.model?.dispose();
    this.model = undefined;
    this.foldedFrom = undefined;
    void this.dataset?.close();
    this.dataset = undefined;
    this.setupReq = undefined;
  }
}

function sameAdapters(a: TaskState, b: TaskState): boolean {
  if (a.finished.length !== b.finished.length) return false;
  // A finished adapter never changes once sent, so the task ids identify the fold.
  return a.finished.every((x, i) => x.task === b.finished[i].task);
}

function headTensors(h: Head, D: number): { w: tf.Tensor2D; b: tf.Tensor1D } {
  return { w: tf.tensor2d(h.weight, [h.classes, D]), b: tf.tensor1d(h.bias) };
}
