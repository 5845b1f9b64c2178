#!/usr/bin/env node
// The Node.js external worker the tests run (tests/workers.rs): a real process built on the Node SDK
// (sdk/node), with the same handlers as worker.py under `js.` names: `js.echo`, `js.sleep`,
// `js.fail`. Every start and end is appended to ROTA_SIDELOG (tab-separated: S|E|C, execution,
// fire, attempt, worker).
// Usage: worker.js TARGET[,TARGET...] WORKER_ID SLOTS [TOKEN]
const fs = require("fs");
const path = require("path");
const { Worker } = require(process.env.ROTA_NODE_SDK || path.join(__dirname, "..", "..", "sdk", "node"));

const [targets, workerId, slots, token] = process.argv.slice(2);
// ROTA_WORKER_TAGS: "region=eu,gpu=true"
const tags = Object.fromEntries((process.env.ROTA_WORKER_TAGS || "").split(",").filter((kv) => kv).map((kv) => kv.split("=", 2)));
const worker = new Worker({ targets: targets.split(","), workerId, slots: Number(slots), token, graceMs: 10000, tags });
const SIDELOG = process.env.ROTA_SIDELOG;

function note(kind, ctx) {
  if (SIDELOG) fs.appendFileSync(SIDELOG, `${kind}\t${ctx.executionId}\t${ctx.fireId}\t${ctx.attempt}\t${workerId}\t\n`);
}

worker.handler("js.echo", async (ctx, args) => {
  note("S", ctx);
  ctx.log(`hello from ${workerId}`);
  const out = {
    fire_id: ctx.fireId, job_id: ctx.jobId, attempt: ctx.attempt, epoch: ctx.epoch, manual: ctx.manual,
    node_id: ctx.nodeId, scheduled_ms: ctx.scheduledAt.getTime(), deadline: ctx.deadline !== null, args, worker: workerId,
    shard_index: ctx.shardIndex, shard_total: ctx.shardTotal,
  };
  note("E", ctx);
  return out;
});

worker.handler("js.sleep", async (ctx, args) => {
  note("S", ctx);
  ctx.log(`sleeping ${args.ms} ms on ${workerId}`);
  await new Promise((resolve, reject) => {
    const t = setTimeout(resolve, args.ms);
    ctx.signal.addEventListener("abort", () => {
      clearTimeout(t);
      note("C", ctx);
      reject(ctx.signal.reason);
    });
  });
  note("E", ctx);
  return `slept on ${workerId}`;
});

// Nothing, for the benchmark: the output is when the handler began (epoch ms).
worker.handler("js.noop", async () => String(Date.now()));

worker.handler("js.fail", (ctx, args) => {
  note("S", ctx);
  throw new Error(`failed on purpose: ${JSON.stringify(args)}`);
});

process.on("SIGTERM", () => worker.stop());
worker.run().catch((e) => {
  console.error(e);
  process.exit(1);
});
