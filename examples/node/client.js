// A rota client in Node.js: puts a job, triggers it, watches its execution to the end, lists
// executions, prints a JSON summary. Usage: node examples/node/client.js HOST:PORT
// Needs: npm install (in examples/node)
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const root = path.join(__dirname, "..", "..", "proto");
const def = loader.loadSync(["rota/v1/scheduler.proto"], {
  includeDirs: [root],
  keepCase: true,
  enums: String,
  defaults: true,
  longs: String,
});
const rota = grpc.loadPackageDefinition(def).rota.v1;
const target = process.argv[2] || "127.0.0.1:7700";
const client = new rota.SchedulerService(target, grpc.credentials.createInsecure());
const call = (method, req) =>
  new Promise((ok, fail) =>
    client[method](req, { deadline: Date.now() + 5000 }, (err, res) => (err ? fail(err) : ok(res))),
  );

async function main() {
  // The invoke-target form; `handler` + `args` (a google.protobuf.Value) work too.
  const job = { id: "node-example", cron: "0 0 3 29 2 *", invoke: "sleep('200ms')" };
  await call("PutJob", { job });
  const stream = client.WatchExecutions({ job_id: "node-example" }, { deadline: Date.now() + 20000 });
  const fired = await call("TriggerJob", { id: "node-example", idempotency_key: "node-1" });
  const states = await new Promise((ok, fail) => {
    const seen = [];
    stream.on("data", (change) => {
      if (change.execution.id !== fired.execution.id) return;
      seen.push(change.execution.state);
      if (!["EXECUTION_STATE_PENDING", "EXECUTION_STATE_RUNNING"].includes(change.execution.state)) {
        stream.cancel();
        ok(seen);
      }
    });
    stream.on("error", (e) => (e.code === grpc.status.CANCELLED ? ok(seen) : fail(e)));
  });
  const listed = await call("ListExecutions", { job_id: "node-example", page_size: 10 });
  console.log(
    JSON.stringify({
      client: "node",
      execution: fired.execution.id,
      states,
      listed: listed.executions.map((e) => e.id),
    }),
  );
  client.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
