/**
 * Run rota's scheduled fires in Node.js.
 *
 * A `Worker` attaches to a rota node over gRPC (`rota.v1.WorkerService`), says which handler names
 * it serves and how many fires it runs at once, and runs the fires the node pushes it:
 *
 * ```ts
 * import { Worker } from "@rota/worker";
 *
 * const worker = new Worker({ targets: ["127.0.0.1:7700"], workerId: "reports-1", slots: 4 });
 * worker.handler("report.daily", async (ctx, args) => {
 *   ctx.log(`report for ${args.region}, fire ${ctx.fireId}`);
 *   return "sent";
 * });
 * await worker.run();
 * ```
 *
 * A handler gets the fire's `Context` and the job's arguments (JSON). What it returns (a string, or
 * anything `JSON.stringify` takes) is the run's output; a thrown error fails the run with its
 * message. When the node cancels the run (the job's timeout, or the node stopping) `ctx.signal` is
 * aborted and no result is sent: the node records the outcome. `run()` reconnects with backoff,
 * trying each target in turn, until `stop()`, which stops taking fires, lets the running ones finish
 * (within `graceMs`), then closes.
 */
import * as path from "path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export const VERSION = "0.1.0";

/** What the node keeps of one message's text (see the proto: FireOutput.text, FireResult). */
export const MAX_TEXT_BYTES = 64 * 1024;

const BUILTINS = ["noop", "sleep", "http", "shell"];

/** Base of this package's errors. */
export class RotaWorkerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RotaWorkerError";
  }
}

/** A worker or handler set up wrongly (names the setting). */
export class ConfigError extends RotaWorkerError {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** JSON, as job arguments are. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** What a handler knows about the fire it runs. */
export interface Context {
  /** `<job id>@<scheduled ms>`: the same for every attempt (make the handler idempotent on it). */
  readonly fireId: string;
  readonly executionId: string;
  readonly jobId: string;
  readonly handler: string;
  readonly scheduledAt: Date;
  readonly attempt: number;
  /** The claiming master's fencing epoch (0 for a manual trigger). */
  readonly epoch: number;
  readonly manual: boolean;
  readonly nodeId: string;
  /** Which shard of a sharded job's fire this run is, from 0 (a job that is not sharded: 0). */
  readonly shardIndex: number;
  /** How many shards the fire fans out into (a job that is not sharded: 1). */
  readonly shardTotal: number;
  /** When the job's timeout ends the run (null: no timeout). */
  readonly deadline: Date | null;
  /** Aborted when the node cancels the run. */
  readonly signal: AbortSignal;
  /** Streams a line of output to the node (kept in the execution's record, capped). */
  log(text: string): void;
}

export type Handler = (ctx: Context, args: Json) => unknown | Promise<unknown>;

export interface WorkerOptions {
  /** Node addresses (host:port), tried in turn. */
  targets: string | string[];
  /** Stable across reconnects; default `<hostname>-<pid>`. */
  workerId?: string;
  /** Fires run at once (1-10000; default 1). */
  slots?: number;
  tags?: Record<string, string>;
  /** A token of role `worker` when the node has tokens. */
  token?: string;
  /** TLS credentials (grpc.credentials.createSsl(...)); default plaintext. */
  credentials?: grpc.ChannelCredentials;
  /** How long stop() waits for running fires (ms; default 30000). */
  graceMs?: number;
  /** Longest wait between reconnects (ms; default 10000). */
  maxBackoffMs?: number;
  /** Where log lines go (default: console.error with a prefix). */
  logger?: (line: string) => void;
}

function validName(s: string): boolean {
  return s.length > 0 && s.length <= 128 && /^[A-Za-z0-9._:-]+$/.test(s);
}

function clip(text: string): string {
  const b = Buffer.from(text, "utf8");
  if (b.length <= MAX_TEXT_BYTES) return text;
  // Drop a partial character at the cut.
  return b.subarray(0, MAX_TEXT_BYTES).toString("utf8").replace(/\uFFFD$/, "");
}

/** The wire's google.protobuf.Value (as proto-loader decodes it) as JSON. */
function fromValue(v: any): Json {
  if (!v || !v.kind) return null;
  switch (v.kind) {
    case "nullValue":
      return null;
    case "boolValue":
      return Boolean(v.boolValue);
    case "numberValue":
      return Number(v.numberValue);
    case "stringValue":
      return String(v.stringValue);
    case "listValue":
      return (v.listValue?.values ?? []).map(fromValue);
    case "structValue": {
      const out: { [k: string]: Json } = {};
      for (const [k, x] of Object.entries(v.structValue?.fields ?? {})) out[k] = fromValue(x);
      return out;
    }
    default:
      return null;
  }
}

function toDate(t: any): Date {
  return new Date(Number(t?.seconds ?? 0) * 1000 + Math.floor(Number(t?.nanos ?? 0) / 1e6));
}

function output(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

let service: grpc.ServiceClientConstructor | null = null;

function workerService(): grpc.ServiceClientConstructor {
  if (!service) {
    const def = protoLoader.loadSync("rota/v1/worker.proto", {
      includeDirs: [path.join(__dirname, "..", "proto")],
      longs: String,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as any;
    service = pkg.rota.v1.WorkerService as grpc.ServiceClientConstructor;
  }
  return service;
}

interface Running {
  abort: AbortController;
}

/** An external worker: serves handler names, runs the fires a rota node pushes it. */
export class Worker {
  readonly targets: string[];
  readonly workerId: string;
  readonly slots: number;
  readonly tags: Record<string, string>;
  /** The node this worker is attached to now (null while it is not). */
  nodeId: string | null = null;
  private readonly handlers = new Map<string, Handler>();
  private readonly opts: WorkerOptions;
  private stopping = false;
  private wake: (() => void) | null = null;
  private call: grpc.ClientDuplexStream<any, any> | null = null;
  private running = new Map<string, Running>();
  private tasks = new Set<Promise<void>>();

  constructor(opts: WorkerOptions) {
    this.opts = opts;
    this.targets = typeof opts.targets === "string" ? [opts.targets] : [...opts.targets];
    if (this.targets.length === 0) throw new ConfigError("targets: give at least one node address (host:port)");
    this.workerId = opts.workerId ?? `${require("os").hostname()}-${process.pid}`;
    if (!validName(this.workerId)) throw new ConfigError("workerId: 1-128 characters of A-Z a-z 0-9 . _ : -");
    this.slots = opts.slots ?? 1;
    if (!Number.isInteger(this.slots) || this.slots < 1 || this.slots > 10000) throw new ConfigError("slots: 1 to 10000");
    this.tags = { ...(opts.tags ?? {}) };
    for (const [k, v] of Object.entries(this.tags)) {
      if (!validName(k) || !validName(v)) {
        throw new ConfigError(`tags[${JSON.stringify(k)}]: keys and values are 1-128 characters of A-Z a-z 0-9 . _ : -`);
      }
    }
  }

  /** Registers `fn` as the handler of `name`. */
  handler(name: string, fn: Handler): this {
    if (!validName(name)) throw new ConfigError(`handler ${JSON.stringify(name)}: 1-128 characters of A-Z a-z 0-9 . _ : -`);
    if (BUILTINS.includes(name)) throw new ConfigError(`handler ${JSON.stringify(name)}: a built-in handler's name`);
    if (this.handlers.has(name)) throw new ConfigError(`handler ${JSON.stringify(name)}: registered twice`);
    this.handlers.set(name, fn);
    return this;
  }

  private log(line: string): void {
    (this.opts.logger ?? ((l: string) => console.error(`rota worker ${this.workerId}: ${l}`)))(line);
  }

  /** Attaches and runs fires until stop(), reconnecting with backoff when a stream ends. */
  async run(): Promise<void> {
    if (this.handlers.size === 0) throw new ConfigError("handlers: register at least one handler before run()");
    this.stopping = false;
    let backoff = 200;
    for (let i = 0; !this.stopping; i++) {
      const target = this.targets[i % this.targets.length];
      const { attached, refused } = await this.attach(target);
      if (refused) throw new RotaWorkerError(`node ${target} refused this worker: ${refused}`);
      if (attached) backoff = 200;
      if (this.stopping) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, backoff);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
      backoff = Math.min(backoff * 2, this.opts.maxBackoffMs ?? 10000);
    }
  }

  /** Stops taking fires, waits for the running ones (up to graceMs), then closes. */
  async stop(): Promise<void> {
    const call = this.call;
    if (call) {
      call.write({ drain: {} });
      const deadline = Date.now() + (this.opts.graceMs ?? 30000);
      // Until none runs: a fire pushed before the node read the drain runs too.
      while (this.tasks.size > 0 && Date.now() < deadline) {
        let timer: NodeJS.Timeout | undefined;
        const grace = new Promise<void>((r) => (timer = setTimeout(r, deadline - Date.now())));
        await Promise.race([Promise.allSettled([...this.tasks]), grace]);
        clearTimeout(timer);
      }
    }
    this.stopping = true;
    // Half-close: the node ends the stream once it has read the last results.
    this.call?.end();
    this.wake?.();
  }

  private attach(target: string): Promise<{ attached: boolean; refused: string | null }> {
    const Client = workerService();
    const client = new Client(target, this.opts.credentials ?? grpc.credentials.createInsecure()) as any;
    const md = new grpc.Metadata();
    if (this.opts.token) md.set("authorization", `Bearer ${this.opts.token}`);
    const call: grpc.ClientDuplexStream<any, any> = client.Attach(md);
    this.call = call;
    let attached = false;
    let beat: NodeJS.Timeout | null = null;
    // A node silent for its session TTL (paused, cut off) is gone: the worker goes to another one.
    // Until the welcome says the TTL, the hello's own deadline applies.
    let ttlMs = 15000;
    let lastHeard = Date.now();
    const watch = setInterval(() => {
      if (Date.now() - lastHeard > ttlMs) {
        this.log(`node ${target} silent for ${ttlMs} ms; attaching elsewhere`);
        call.cancel();
      }
    }, 100);
    return new Promise((resolve) => {
      let done = false;
      const finish = (refused: string | null) => {
        if (done) return;
        done = true;
        clearInterval(watch);
        if (beat) clearInterval(beat);
        // The session is over: the node has given its fires to their jobs' recovery policy, so
        // their handlers here stop (a result could no longer be recorded).
        for (const r of this.running.values()) r.abort.abort(new RotaWorkerError("the session with the node ended"));
        this.running.clear();
        if (this.call === call) this.call = null;
        this.nodeId = null;
        client.close();
        resolve({ attached, refused });
      };
      call.on("data", (msg: any) => {
        lastHeard = Date.now();
        switch (msg.msg) {
          case "welcome": {
            attached = true;
            this.nodeId = msg.welcome.nodeId;
            const every = Math.max(Number(msg.welcome.heartbeatIntervalMs) || 1000, 100);
            ttlMs = Math.max(Number(msg.welcome.sessionTtlMs) || 15000, 200);
            beat = setInterval(() => call.write({ heartbeat: {} }), every);
            this.log(`attached to node ${this.nodeId}`);
            break;
          }
          case "fire":
            this.start(call, msg.fire);
            break;
          case "cancel": {
            const r = this.running.get(msg.cancel.executionId);
            if (r) {
              this.log(`fire ${msg.cancel.executionId} cancelled by the node: ${msg.cancel.reason}`);
              r.abort.abort(new RotaWorkerError(`cancelled by the node: ${msg.cancel.reason}`));
            }
            break;
          }
          case "rejected":
            this.log(`node refused a message about ${JSON.stringify(msg.rejected.executionId)}: ${msg.rejected.reason}`);
            break;
        }
      });
      call.on("error", (e: grpc.ServiceError) => {
        // A bad hello, a refused token, or another process attached with this worker id
        // (ALREADY_EXISTS): retrying would not help, or would take the id back and forth.
        const fatal = [
          grpc.status.INVALID_ARGUMENT,
          grpc.status.PERMISSION_DENIED,
          grpc.status.UNAUTHENTICATED,
          grpc.status.ALREADY_EXISTS,
        ];
        if (!this.stopping) this.log(`stream to ${target} ended: ${grpc.status[e.code]} ${e.details}`);
        finish(fatal.includes(e.code) ? `${grpc.status[e.code]}: ${e.details}` : null);
      });
      call.on("end", () => finish(null));
      call.write({
        hello: {
          workerId: this.workerId,
          handlers: [...this.handlers.keys()].sort(),
          slots: this.slots,
          tags: this.tags,
          sdk: `rota-node ${VERSION}`,
        },
      });
    });
  }

  private start(call: grpc.ClientDuplexStream<any, any>, fire: any): void {
    const abort = new AbortController();
    const executionId: string = fire.executionId;
    this.running.set(executionId, { abort });
    const ctx: Context = {
      fireId: fire.fireId,
      executionId,
      jobId: fire.jobId,
      handler: fire.handler,
      scheduledAt: toDate(fire.scheduledTime),
      attempt: Number(fire.attempt),
      epoch: Number(fire.epoch),
      manual: Boolean(fire.manual),
      nodeId: fire.nodeId,
      shardIndex: Number(fire.shardIndex ?? 0),
      // A node older than sharding sends neither: shard 0 of 1.
      shardTotal: Number(fire.shardTotal) || 1,
      deadline: fire.deadline ? toDate(fire.deadline) : null,
      signal: abort.signal,
      log: (text: string) => {
        if (abort.signal.aborted) return;
        call.write({ output: { executionId, text: clip(text.endsWith("\n") ? text : text + "\n") } });
      },
    };
    const task = this.runOne(call, ctx, fire).finally(() => {
      this.running.delete(executionId);
      this.tasks.delete(task);
    });
    this.tasks.add(task);
  }

  private async runOne(call: grpc.ClientDuplexStream<any, any>, ctx: Context, fire: any): Promise<void> {
    const result: { executionId: string; success: boolean; output: string; error: string } = {
      executionId: ctx.executionId,
      success: false,
      output: "",
      error: "",
    };
    try {
      const fn = this.handlers.get(fire.handler);
      if (!fn) throw new RotaWorkerError(`this worker has no handler ${JSON.stringify(fire.handler)}`);
      call.write({ started: { executionId: ctx.executionId } });
      const value = await fn(ctx, fire.args ? fromValue(fire.args) : null);
      result.success = true;
      result.output = clip(output(value));
    } catch (e: any) {
      result.error = clip(`${e?.name ?? "Error"}: ${e?.message ?? String(e)}`);
    }
    // The session ended: it is gone, and so is the fire (the node gave it to its recovery policy).
    if (this.call !== call) return;
    // Cancelled by the node: it records the outcome (`timed_out`) and frees the fire's slot on this
    // answer, sent once the handler has settled.
    if (ctx.signal.aborted) {
      call.write({ result: { executionId: ctx.executionId, success: false, output: "", error: "cancelled" } });
      return;
    }
    call.write({ result });
  }
}
