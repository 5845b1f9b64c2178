// Copies the repository's worker protocol into the package (proto/), so the published package
// carries the exact protocol of the rota checkout it was built from. ROTA_PROTO overrides where the
// repository's proto/ is (building from a copy of this folder).
const fs = require("fs");
const path = require("path");

const root = process.env.ROTA_PROTO || path.join(__dirname, "..", "..", "..", "proto");
const from = path.join(root, "rota", "v1", "worker.proto");
if (!fs.existsSync(from)) {
  console.error(`@rota/worker: cannot find ${from} (build from the rota repository, or set ROTA_PROTO)`);
  process.exit(1);
}
const to = path.join(__dirname, "..", "proto", "rota", "v1");
fs.mkdirSync(to, { recursive: true });
fs.copyFileSync(from, path.join(to, "worker.proto"));
