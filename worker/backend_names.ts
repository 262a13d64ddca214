/** Names accepted by `--backend` / INFLORA_BACKEND, in the order they are tried. */
export const BACKEND_NAMES = ["node-gpu", "webgpu", "node", "blas", "wasm", "cpu"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
