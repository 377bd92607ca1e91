// A command-line check of the gateway's Connect / gRPC-Web listener from Node:
//
//   node web/dist/check.js --base-url http://127.0.0.1:8080 [--token TOKEN]
//       [--protocol connect|grpc-web] [--http 1.1|2] [--format binary|json] [--timeout SECONDS]
//
// Prints ONE JSON object on stdout. Each step records its result, or
// {"error": "<Connect code name>", "message": "..."} when it fails ("Ended" for a stream that
// ended cleanly before its first message); steps that need a token
// record {"skipped": "..."} without --token. Exits 0 once the object is printed
// (2 for bad arguments).
import { parseArgs } from "node:util";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb";
import { AuthService } from "./gen/hpcgate/v1/auth_pb";
import { ComputeService } from "./gen/hpcgate/v1/compute_pb";
import { StatusService } from "./gen/hpcgate/v1/status_pb";

const USAGE =
  "usage: node check.js --base-url URL [--token TOKEN] [--protocol connect|grpc-web] " +
  "[--http 1.1|2] [--format binary|json] [--timeout SECONDS]";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function fail(message: string): never {
  process.stderr.write(`check.js: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function options() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        "base-url": { type: "string" },
        token: { type: "string" },
        protocol: { type: "string", default: "connect" },
        http: { type: "string", default: "1.1" },
        format: { type: "string", default: "binary" },
        timeout: { type: "string", default: "20" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
  }
  if (parsed.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const baseUrl = parsed["base-url"];
  if (!baseUrl) fail("--base-url is required");
  const protocol = parsed.protocol;
  if (protocol !== "connect" && protocol !== "grpc-web") fail(`unknown --protocol ${protocol}`);
  const http = parsed.http;
  if (http !== "1.1" && http !== "2") fail(`unknown --http ${http}`);
  const format = parsed.format;
  if (format !== "binary" && format !== "json") fail(`unknown --format ${format}`);
  const timeoutS = Number(parsed.timeout);
  if (!(timeoutS > 0)) fail(`bad --timeout ${parsed.timeout}`);
  return { baseUrl, token: parsed.token, protocol, http, format, timeoutMs: timeoutS * 1000 } as const;
}

function errorJson(e: unknown): { [key: string]: Json } {
  const err = ConnectError.from(e);
  return { error: Code[err.code] ?? String(err.code), message: err.rawMessage };
}

// Runs one step; its failure becomes {"error", "message"}.
async function step(run: () => Promise<Json>): Promise<Json> {
  try {
    return await run();
  } catch (e) {
    return errorJson(e);
  }
}

function systemId(name: string): string {
  return name.startsWith("systems/") ? name.slice("systems/".length) : name;
}

async function main(): Promise<void> {
  const opt = options();
  const transportOptions = {
    baseUrl: opt.baseUrl,
    httpVersion: opt.http,
    useBinaryFormat: opt.format === "binary",
  };
  const transport: Transport =
    opt.protocol === "grpc-web"
      ? createGrpcWebTransport(transportOptions)
      : createConnectTransport(transportOptions);
  const clientOf = <T extends DescService>(service: T): Client<T> => createClient(service, transport);
  const status = clientOf(StatusService);
  const auth = clientOf(AuthService);
  const compute = clientOf(ComputeService);
  const timeoutMs = opt.timeoutMs;
  const withToken = opt.token ? { authorization: `Bearer ${opt.token}` } : undefined;
  const skipped: Json = { skipped: "no --token given" };

  const out: { [key: string]: Json } = {
    base_url: opt.baseUrl,
    protocol: opt.protocol,
    http: opt.http,
    format: opt.format,
  };

  out.list_systems = await step(async () => {
    const res = await status.listSystems({}, { timeoutMs });
    return res.systems.map((s) => systemId(s.name));
  });

  out.watch_systems_first = await step(async () => {
    const abort = new AbortController();
    try {
      for await (const msg of status.watchSystems({}, { signal: abort.signal, timeoutMs })) {
        const k = msg.kind;
        if (k.case === "snapshot") return k.value.systems.map((s) => systemId(s.name));
        if (k.case === "change") return k.value.system ? [systemId(k.value.system.name)] : [];
        return [];
      }
      return { error: "Ended", message: "the stream ended before its first message" };
    } finally {
      abort.abort();
    }
  });

  out.token_info = withToken
    ? await step(async () => {
        const res = await auth.getTokenInfo({}, { headers: withToken, timeoutMs });
        return { user: res.user, scopes: res.scopes };
      })
    : skipped;

  out.no_token = await step(async () => {
    const res = await auth.getTokenInfo({}, { timeoutMs });
    return { unexpected_success: { user: res.user, scopes: res.scopes } };
  });

  out.bad_request = withToken
    ? await step(async (): Promise<Json> => {
        try {
          await compute.submitJob({}, { headers: withToken, timeoutMs });
        } catch (e) {
          const err = ConnectError.from(e);
          const violations: Json[] = [];
          for (const br of err.findDetails(BadRequestSchema)) {
            for (const v of br.fieldViolations) violations.push({ field: v.field, description: v.description });
          }
          return { ...errorJson(err), field_violations: violations };
        }
        return { unexpected_success: true };
      })
    : skipped;

  out.watch_jobs = withToken
    ? await step(async () => {
        const abort = new AbortController();
        try {
          const stream = compute.watchJobs(
            { parent: "systems/local" },
            { headers: withToken, signal: abort.signal, timeoutMs },
          );
          for await (const msg of stream) {
            const k = msg.kind;
            const first: { [key: string]: Json } = { kind: k.case ?? null, revision: msg.revision.toString() };
            if (k.case === "snapshot") {
              first.jobs = k.value.jobs.length;
              first.last = k.value.last;
            }
            return first;
          }
          return { error: "Ended", message: "the stream ended before its first message" };
        } finally {
          abort.abort();
        }
      })
    : skipped;

  // The process may keep an idle HTTP/2 session open: exit once stdout is flushed.
  process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
}

main().catch((e: unknown) => {
  process.stderr.write(`check.js: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
