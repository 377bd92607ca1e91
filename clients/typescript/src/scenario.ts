// A typed TypeScript client of hpcgate, end to end against a real server: status without
// a token; submit a job, watch it to the end, read its output; upload a file and download it
// back with checksums; a bad request whose BadRequest details are decoded. Types and
// service clients are generated from proto/ by ts-proto (generate.sh).
//
//   HPCGATE_ADDRESS=127.0.0.1:50051 HPCGATE_TOKEN=... HPCGATE_WORKDIR=/home/alice/x \
//     node dist/scenario.js
//
// Prints one line per step (SYSTEMS, JOB, OUTPUT, UPLOAD, DOWNLOAD, VIOLATION..., DONE);
// exits 1 with the error on any failure.

import { createHash, randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";

import { BadRequest } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";
import {
  ComputeServiceClient,
  JobOutputStream,
  JobState,
  ReadJobOutputRequest,
  SubmitJobRequest,
  WatchJobsRequest,
  jobStateToJSON,
} from "./gen/hpcgate/v1/compute";
import { ListSystemsRequest, StatusServiceClient } from "./gen/hpcgate/v1/status";
import {
  DownloadRequest,
  UploadRequest,
  UploadResponse,
  UtilitiesServiceClient,
} from "./gen/hpcgate/v1/utilities";

const address = required("HPCGATE_ADDRESS");
const token = required("HPCGATE_TOKEN");
const workdir = required("HPCGATE_WORKDIR");
const insecure = grpc.credentials.createInsecure();
const auth = new grpc.Metadata();
auth.set("authorization", `Bearer ${token}`);
const deadline = () => new Date(Date.now() + 60_000);

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
}

function unary<Req, Res>(
  call: (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>,
         cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall,
  request: Req,
  metadata: grpc.Metadata = new grpc.Metadata(),
): Promise<Res> {
  return new Promise((resolve, reject) => {
    call(request, metadata, { deadline: deadline() }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function statusWithoutToken(): Promise<void> {
  const status = new StatusServiceClient(address, insecure);
  const reply = await unary(status.listSystems.bind(status), ListSystemsRequest.fromPartial({}));
  console.log(`SYSTEMS ${reply.systems.map((s) => s.name.replace("systems/", "")).join(",")}`);
  status.close();
}

async function jobToTheEnd(compute: ComputeServiceClient): Promise<void> {
  const submitted = await unary(
    compute.submitJob.bind(compute),
    SubmitJobRequest.fromPartial({
      parent: "systems/local",
      scriptSource: { $case: "script", value: "#!/bin/sh\necho hello-from-ts\n" },
      options: { jobName: "ts-scenario", stdoutPath: `${workdir}/ts-job.out` },
    }),
    auth,
  );
  const job = submitted.job!;
  // WatchJobs on this job alone; the stream ends by itself once it has ended.
  let state = job.state;
  await new Promise<void>((resolve, reject) => {
    const stream = compute.watchJobs(
      WatchJobsRequest.fromPartial({ parent: "systems/local", names: [job.name], untilFinished: true }),
      auth,
    );
    stream.on("data", (reply) => {
      if (reply.kind?.$case === "event") state = reply.kind.value.job!.state;
      if (reply.kind?.$case === "snapshot") {
        for (const j of reply.kind.value.jobs) if (j.name === job.name) state = j.state;
      }
    });
    stream.on("error", reject);
    stream.on("end", resolve);
  });
  console.log(`JOB ${job.jobId} ${jobStateToJSON(state).replace("JOB_STATE_", "")}`);
  if (state !== JobState.JOB_STATE_COMPLETED) throw new Error(`job ended ${jobStateToJSON(state)}`);
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    const stream = compute.readJobOutput(
      ReadJobOutputRequest.fromPartial({ name: job.name, stream: JobOutputStream.JOB_OUTPUT_STREAM_STDOUT }),
      auth,
    );
    stream.on("data", (reply) => chunks.push(Buffer.from(reply.data)));
    stream.on("error", reject);
    stream.on("end", resolve);
  });
  const output = Buffer.concat(chunks).toString("utf8");
  if (!output.includes("hello-from-ts")) throw new Error(`unexpected output ${JSON.stringify(output)}`);
  console.log("OUTPUT ok");
}

async function filesRoundTrip(files: UtilitiesServiceClient): Promise<void> {
  const content = randomBytes(300 * 1024 + 7);
  const sha256 = createHash("sha256").update(content).digest("hex");
  const path = `${workdir}/ts-upload.bin`;
  const uploaded = await new Promise<UploadResponse>((resolve, reject) => {
    const stream = files.upload(auth, { deadline: deadline() }, (err, res) => (err ? reject(err) : resolve(res)));
    stream.write(UploadRequest.fromPartial({
      kind: {
        $case: "header",
        value: { system: "local", path, expectedSize: String(content.length), expectedSha256: sha256 },
      },
    }));
    for (let at = 0; at < content.length; at += 64 * 1024) {
      stream.write(UploadRequest.fromPartial({ kind: { $case: "chunk", value: { data: content.subarray(at, at + 64 * 1024) } } }));
    }
    stream.end();
  });
  if (uploaded.sha256 !== sha256 || uploaded.size !== String(content.length)) {
    throw new Error(`upload answered ${uploaded.sha256} ${uploaded.size}`);
  }
  console.log(`UPLOAD ${uploaded.sha256}`);
  const hash = createHash("sha256");
  const received: Buffer[] = [];
  let trailer = "";
  await new Promise<void>((resolve, reject) => {
    const stream = files.download(DownloadRequest.fromPartial({ system: "systems/local", path }), auth);
    stream.on("data", (reply) => {
      if (reply.kind?.$case === "chunk") {
        hash.update(reply.kind.value.data);
        received.push(Buffer.from(reply.kind.value.data));
      } else if (reply.kind?.$case === "trailer") {
        trailer = reply.kind.value.sha256;
      }
    });
    stream.on("error", reject);
    stream.on("end", resolve);
  });
  const digest = hash.digest("hex");
  if (digest !== trailer || digest !== sha256 || !Buffer.concat(received).equals(content)) {
    throw new Error(`download: ${digest} vs trailer ${trailer}`);
  }
  console.log(`DOWNLOAD ok ${digest}`);
}

async function badRequest(compute: ComputeServiceClient): Promise<void> {
  try {
    await unary(
      compute.submitJob.bind(compute),
      SubmitJobRequest.fromPartial({
        parent: "systems/local",
        scriptSource: { $case: "script", value: "echo no interpreter line" },
        options: { timeLimit: "soon" },
      }),
      auth,
    );
  } catch (e) {
    const error = e as grpc.ServiceError;
    if (error.code !== grpc.status.INVALID_ARGUMENT) throw error;
    // The rich status rides in the trailer `grpc-status-details-bin`: a google.rpc.Status
    // whose details are Any messages, here one google.rpc.BadRequest.
    const [bin] = error.metadata.get("grpc-status-details-bin");
    const status = Status.decode(bin as Buffer);
    for (const detail of status.details) {
      if (detail.typeUrl === "type.googleapis.com/google.rpc.BadRequest") {
        for (const v of BadRequest.decode(detail.value).fieldViolations) {
          console.log(`VIOLATION ${v.field}: ${v.description}`);
        }
      }
    }
    return;
  }
  throw new Error("a bad request was accepted");
}

async function main(): Promise<void> {
  await statusWithoutToken();
  const compute = new ComputeServiceClient(address, insecure);
  const files = new UtilitiesServiceClient(address, insecure);
  try {
    await jobToTheEnd(compute);
    await filesRoundTrip(files);
    await badRequest(compute);
  } finally {
    compute.close();
    files.close();
  }
  console.log("DONE");
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : e);
  process.exit(1);
});
