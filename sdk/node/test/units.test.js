// The SDK's own units: settings are checked and named. The end-to-end cases (a real node, real
// worker processes) are in the repository's tests/workers.rs.
const test = require("node:test");
const assert = require("node:assert");
const { Worker, ConfigError } = require("..");

test("bad settings are named", () => {
  const cases = [
    [{ targets: [] }, "targets"],
    [{ targets: "h:1", workerId: "bad id" }, "workerId"],
    [{ targets: "h:1", slots: 0 }, "slots"],
    [{ targets: "h:1", slots: 1.5 }, "slots"],
    [{ targets: "h:1", tags: { ok: "no spaces" } }, 'tags["ok"]'],
  ];
  for (const [opts, field] of cases) {
    assert.throws(() => new Worker(opts), (e) => e instanceof ConfigError && e.message.startsWith(field), field);
  }
});

test("handler names", () => {
  const w = new Worker({ targets: "h:1", workerId: "w" });
  for (const [bad, why] of [["", "1-128"], ["a b", "1-128"], ["noop", "built-in"], ["x".repeat(129), "1-128"]]) {
    assert.throws(() => w.handler(bad, () => null), (e) => e instanceof ConfigError && e.message.includes(why), bad);
  }
  w.handler("report.daily", () => null);
  assert.throws(() => w.handler("report.daily", () => null), /registered twice/);
});

test("run needs a handler", async () => {
  await assert.rejects(new Worker({ targets: "h:1", workerId: "w" }).run(), /handlers/);
});

test("the default id is valid", () => {
  assert.match(new Worker({ targets: "h:1" }).workerId, /^[A-Za-z0-9._:-]{1,128}$/);
});
