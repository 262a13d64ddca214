/** Shared by the grpc_* tests: a scriptable fake worker, a setup request, health and reflection probes. */
import path from "node:path";
import {
  type ChannelCredentials,
  type ClientDuplexStream,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import {
  type CovarianceRequest,
  type CovarianceResult,
  type EvalRequest,
  type EvalResult,
  PROTOCOL_VERSION,
  type SetupRequest,
  type TaskState,
  type TrainStepRequest,
  type TrainStepResult,
  type WorkerClient,
} from "../../common/protocol.js";

export const TOKEN = "test-token-0123456789abcdef";

export function setupRequest(D: number, depth: number, runId = "run-1"): SetupRequest {
  return {
    runId,
    protocolVersion: PROTOCOL_VERSION,
    weightsPath: "/weights/vit.safetensors",
    weightsFingerprint: "f".repeat(64),
    model: { imgSize: 32, patchSize: 4, inChans: 3, embedDim: D, depth, numHeads: 2, mlpHidden: 4 * D },
    data: {
      dataset: "cifar100",
      dataPath: "/data/cifar",
      imageSize: 32,
      mean: [0.5, 0.5, 0.5],
      std: [0.25, 0.25, 0.25],
    },
  };
}

/** A WorkerClient that records what it was asked and answers with what the test scripted. */
export class FakeWorker implements WorkerClient {
  readonly name = "fake";
  readonly calls: string[] = [];
  readonly states: TaskState[] = [];
  readonly trainRequests: TrainStepRequest[] = [];
  setupRequests: SetupRequest[] = [];
  covarianceReply?: (req: CovarianceRequest) => CovarianceResult[];
  trainReply?: (req: TrainStepRequest) => TrainStepResult[];
  evalReply?: (req: EvalRequest) => EvalResult[];

  async setup(req: SetupRequest) {
    this.calls.push("setup");
    this.setupRequests.push(req);
    return {
      workerId: "fake-worker",
      protocolVersion: PROTOCOL_VERSION,
      weightsFingerprint: req.weightsFingerprint,
      backend: "cpu",
      device: "test",
    };
  }

  async setTaskState(state: TaskState) {
    this.calls.push("setTaskState");
    this.states.push(state);
  }

  async covariance(req: CovarianceRequest) {
    this.calls.push("covariance");
    if (!this.covarianceReply) throw new Error("no covariance scripted");
    return this.covarianceReply(req);
  }

  async trainStep(req: TrainStepRequest) {
    this.calls.push("trainStep");
    this.trainRequests.push(req);
    if (!this.trainReply) throw new Error("no training step scripted");
    return this.trainReply(req);
  }

  async evaluate(req: EvalRequest) {
    this.calls.push("evaluate");
    if (!this.evalReply) throw new Error("no evaluation scripted");
    return this.evalReply(req);
  }

  async close() {
    this.calls.push("close");
  }
}

export function tokenMetadata(token = TOKEN): Metadata {
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  return md;
}

type AnyClient = InstanceType<ServiceClientConstructor> & Record<string, (...args: unknown[]) => unknown>;

function clientFor(
  file: string,
  includeDir: string,
  service: string[],
  address: string,
  creds: ChannelCredentials,
) {
  const pkg = loadPackageDefinition(
    loadSync(file, { includeDirs: [includeDir], enums: String, keepCase: true }),
  );
  let node: unknown = pkg;
  for (const part of service) node = (node as Record<string, unknown>)[part];
  const Ctor = node as ServiceClientConstructor;
  return new Ctor(address, creds) as AnyClient;
}

/** grpc.health.v1.Health/Check, without any token (as a Kubernetes probe calls it). */
export function healthCheck(
  address: string,
  service: string,
  creds = credentials.createInsecure(),
): Promise<string> {
  const healthRoot = path.resolve(path.dirname(healthProtoPath), "../..");
  const client = clientFor(healthProtoPath, healthRoot, ["grpc", "health", "v1", "Health"], address, creds);
  return new Promise((resolve, reject) => {
    client.check({ service }, (err: ServiceError | null, res: { status: string }) => {
      client.close();
      if (err) reject(err);
      else resolve(res.status);
    });
  });
}

export interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** One grpc.reflection.v1 request and its answer. */
export function reflect(
  address: string,
  md: Metadata,
  request: Record<string, string>,
): Promise<ReflectionResponse> {
  const protoDir = path.resolve(import.meta.dirname, "../../node_modules/@grpc/reflection/build/proto");
  const client = clientFor(
    path.join(protoDir, "grpc/reflection/v1/reflection.proto"),
    protoDir,
    ["grpc", "reflection", "v1", "ServerReflection"],
    address,
    credentials.createInsecure(),
  );
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo(md) as ClientDuplexStream<
      Record<string, string>,
      ReflectionResponse
    >;
    call.on("data", (res: ReflectionResponse) => {
      resolve(res);
      call.end();
    });
    call.on("error", (err: Error) => reject(err));
    call.on("end", () => client.close());
    call.write(request);
  });
}

/** The rejection of `p`, which must reject. */
export async function rejection(p: Promise<unknown>): Promise<Error & Partial<ServiceError>> {
  try {
    await p;
  } catch (err) {
    return err as Error & Partial<ServiceError>;
  }
  throw new Error("expected the call to fail");
}
