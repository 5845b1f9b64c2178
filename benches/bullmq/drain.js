// BullMQ's no-op drain, for the benchmark suite to compare rota's burst with in the same run:
// N no-op jobs are queued first, then W worker processes (concurrency C each, completed jobs kept,
// as rota keeps every execution record) drain them; the time runs from the moment every worker is
// told to start to the moment the last job is completed. Prints one JSON line.
// Usage: node drain.js <redis port> <jobs> <worker processes> <concurrency>
'use strict';
const { Queue, Worker } = require('bullmq');
const { fork } = require('child_process');

const [port, jobs, procs, concurrency] = process.argv.slice(2, 6).map(Number);
const connection = { host: '127.0.0.1', port };
const QUEUE = 'bench';

async function worker() {
  const w = new Worker(QUEUE, async () => {}, { connection, concurrency, autorun: false });
  await w.waitUntilReady();
  process.send('ready');
  process.on('message', (m) => {
    if (m === 'go') w.run();
    if (m === 'stop') w.close().then(() => process.exit(0));
  });
}

async function main() {
  const q = new Queue(QUEUE, { connection });
  await q.obliterate({ force: true });
  for (let i = 0; i < jobs; i += 1000) {
    const batch = [];
    for (let j = i; j < Math.min(i + 1000, jobs); j++) batch.push({ name: 'noop', data: { i: j } });
    await q.addBulk(batch);
  }
  const children = [];
  for (let i = 0; i < procs; i++) {
    const c = fork(__filename, [String(port), String(jobs), String(procs), String(concurrency), 'worker']);
    children.push(new Promise((ok) => c.once('message', () => ok(c))));
  }
  const ready = await Promise.all(children);
  const t0 = process.hrtime.bigint();
  for (const c of ready) c.send('go');
  let done = 0;
  for (;;) {
    done = (await q.getJobCounts('completed')).completed;
    if (done >= jobs) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const c of ready) c.send('stop');
  await q.close();
  const version = require('bullmq/package.json').version;
  console.log(JSON.stringify({ bullmq: version, jobs, processes: procs, concurrency, completed: done, seconds: secs, jobs_per_second: done / secs }));
}

if (process.argv[6] === 'worker') {
  worker().catch((e) => { console.error(e); process.exit(1); });
} else {
  main().catch((e) => { console.error(e); process.exit(1); });
}
