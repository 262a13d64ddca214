import { DataError } from "../../common/data/errors.js";
import { decodeImage } from "./decode_image.js";
import { Limiter } from "./limiter.js";
import type { BadImage, JobContextData, LoadJob } from "./load_job.js";
import { type PixelSource, planarSource } from "./pixel_source.js";
import { type TransformSpec, toTensorTables, transformInto } from "./transform.js";

/**
 * Decodes in flight per thread: enough to keep libuv's decode threads busy while this thread resizes,
 * few enough that large images (ImageNet-R has some of tens of megapixels) cannot pile up in memory.
 */
const DECODES_IN_FLIGHT = 4;

/** A job runner bound to one dataset; the same code runs on the main thread and in pool workers. */
export class JobRunner {
  private readonly decodes = new Limiter(DECODES_IN_FLIGHT);
  private readonly spec: TransformSpec;
  readonly imageFloats: number;

  constructor(private readonly ctx: JobContextData) {
    this.spec = {
      imageSize: ctx.imageSize,
      testTransform: ctx.testTransform,
      lut: toTensorTables(ctx.mean, ctx.std),
    };
    this.imageFloats = 3 * ctx.imageSize * ctx.imageSize;
  }

  /** Writes the job's images to `out` starting at image slot `slot`; returns the skipped ones. */
  async run(job: LoadJob, out: Float32Array, slot: number): Promise<BadImage[]> {
    const arrays = this.ctx.arrays?.[job.split];
    if (arrays !== undefined) {
      const size = arrays.channels * arrays.height * arrays.width;
      job.indices.forEach((index, k) => {
        const src = planarSource(
          arrays.data.subarray(index * size, (index + 1) * size),
          arrays.width,
          arrays.height,
          arrays.channels,
        );
        transformInto(src, this.spec, job.augment, index, out, (slot + k) * this.imageFloats);
      });
      return [];
    }
    const paths = job.paths;
    if (paths === undefined || paths.length !== job.indices.length) throw new Error("file job without paths");
    // Queue every decode (they run on libuv's threads, a few at a time) and transform them in order.
    const decoded: Promise<PixelSource>[] = paths.map((p) => this.decodes.run(() => decodeImage(p)));
    for (const d of decoded) d.catch(() => {}); // rejections are handled in order below
    const bad: BadImage[] = [];
    for (let k = 0; k < paths.length; k++) {
      const offset = (slot + k) * this.imageFloats;
      try {
        const src = await decoded[k];
        if (src.width === 0 || src.height === 0) throw new Error("image has zero size");
        transformInto(src, this.spec, job.augment, job.indices[k], out, offset);
      } catch (e) {
        const message = `unreadable image (${(e as Error).message})`;
        if (this.ctx.onBadImage !== "skip") throw new DataError(message, paths[k]);
        out.fill(0, offset, offset + this.imageFloats);
        bad.push({ index: job.indices[k], file: paths[k], message });
      }
    }
    return bad;
  }
}
