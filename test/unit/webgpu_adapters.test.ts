/**
 * Which WebGPU adapter a worker takes, on faked adapter lists in the words of Dawn's own list (what
 * `requestAdapter` answers for an adapter name that matches nothing): hardware before software, `--gpu N`
 * as the Nth hardware adapter, and local workers spread over the GPUs found.
 */
import { describe, expect, it } from "vitest";
import {
  type AdapterEntry,
  countHardwareAdapters,
  parseAdapterList,
  pickAdapter,
  spreadOverGpus,
} from "../../worker/webgpu_device.js";

// Dawn's message on a node with two different GPUs and Mesa's lavapipe (the format of its GPU.cpp).
const DAWN_MESSAGE = `no adapter  with name 'inflora-list-adapters-' found
Available adapters:
 * backend: 'vulkan', name: 'NVIDIA L4'
 * backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)'
 * backend: 'vulkan', name: 'NVIDIA A100-SXM4-80GB'`;

const nvidia = (name: string): AdapterEntry => ({ backend: "vulkan", name });
const lavapipe: AdapterEntry = { backend: "vulkan", name: "llvmpipe (LLVM 15.0.6, 256 bits)" };

describe("WebGPU adapter choice", () => {
  it("reads Dawn's adapter list", () => {
    expect(parseAdapterList(DAWN_MESSAGE)).toEqual([
      nvidia("NVIDIA L4"),
      lavapipe,
      nvidia("NVIDIA A100-SXM4-80GB"),
    ]);
    expect(parseAdapterList("no suitable backends found\nAvailable adapters:")).toEqual([]);
  });

  it("takes the Nth hardware adapter for --gpu N, skipping software ones", () => {
    const list = parseAdapterList(DAWN_MESSAGE);
    expect(countHardwareAdapters(list)).toBe(2);
    expect(pickAdapter(list, { gpu: 0, allowSoftware: false })).toEqual({
      entry: nvidia("NVIDIA L4"),
      gpu: 0,
    });
    expect(pickAdapter(list, { gpu: 1, allowSoftware: false })).toEqual({
      entry: nvidia("NVIDIA A100-SXM4-80GB"),
      gpu: 1,
    });
    expect(() => pickAdapter(list, { gpu: 2, allowSoftware: true })).toThrow(
      /--gpu 2: only 2 hardware GPU adapter\(s\) found; adapters: "NVIDIA L4" \(vulkan\), "llvmpipe/,
    );
    expect(() => pickAdapter(list, { gpu: -1, allowSoftware: true })).toThrow(/expected a GPU index/);
  });

  it("without --gpu takes the first hardware adapter, a software one only when allowed", () => {
    expect(pickAdapter([lavapipe, nvidia("NVIDIA L4")], { allowSoftware: false }).entry.name).toBe(
      "NVIDIA L4",
    );
    expect(pickAdapter([lavapipe], { allowSoftware: true })).toEqual({ entry: lavapipe });
    expect(() => pickAdapter([lavapipe], { allowSoftware: false })).toThrow(
      /only a software adapter .*llvmpipe.*unless forced \(--backend webgpu\)/,
    );
    expect(() =>
      pickAdapter([{ backend: "vulkan", name: "SwiftShader Device (Subzero)" }], { allowSoftware: false }),
    ).toThrow(/only a software adapter/);
  });

  it("names the install command where there is no adapter at all", () => {
    expect(() => pickAdapter([], { allowSoftware: true })).toThrow(
      /no WebGPU adapter.*apt-get install -t bookworm-backports mesa-vulkan-drivers/,
    );
  });

  it("refuses the second of two identically named GPUs, which Dawn's name filter cannot reach", () => {
    const twins = [nvidia("NVIDIA H100 80GB HBM3"), nvidia("NVIDIA H100 80GB HBM3")];
    expect(pickAdapter(twins, { gpu: 0, allowSoftware: false }).gpu).toBe(0);
    expect(() => pickAdapter(twins, { gpu: 1, allowSoftware: false })).toThrow(
      /named like an earlier one.*NVIDIA_VISIBLE_DEVICES/,
    );
    // A name that contains an earlier adapter's name is caught the same way (Dawn matches substrings).
    expect(() =>
      pickAdapter([nvidia("NVIDIA A100"), nvidia("NVIDIA A100-SXM4-80GB")], { gpu: 1, allowSoftware: false }),
    ).not.toThrow();
    expect(() =>
      pickAdapter([nvidia("NVIDIA A100-SXM4-80GB"), nvidia("NVIDIA A100")], { gpu: 1, allowSoftware: false }),
    ).toThrow(/named like an earlier one/);
  });

  it("spreads local workers over the GPUs found, round robin", () => {
    expect(spreadOverGpus(5, 2)).toEqual([0, 1, 0, 1, 0]);
    expect(spreadOverGpus(2, 4)).toEqual([0, 1]);
    expect(spreadOverGpus(3, 0)).toEqual([undefined, undefined, undefined]);
  });
});
