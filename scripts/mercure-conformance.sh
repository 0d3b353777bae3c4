#!/usr/bin/env bash
# Runs the Mercure hub's own conformance suite (dunglas/mercure, conformance-tests/ at v0.24.2,
# Playwright) against Herald, out of tree: the suite is AGPL-3.0, so it is copied from a local
# clone of the Mercure repository into a temporary folder, never into Herald's repository.
#
#   MERCURE_REPO=/path/to/mercure(.git) scripts/mercure-conformance.sh
#
# Needs: a clone (or bare mirror) of dunglas/mercure with the tag, Debian's Chromium at
# CHROMIUM_PATH (default /usr/bin/chromium), and npm (the suite's own @playwright/test is
# installed from the npm registry; no browser is downloaded). Herald is built (npm run build) and
# started on a free port with both keys set to the suite's secret; BROKER picks its broker.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MERCURE_REPO=${MERCURE_REPO:-/work/.mirror/dunglas+mercure/repo}
MERCURE_TAG=${MERCURE_TAG:-v0.24.2}
WORK=${MERCURE_CONFORMANCE_DIR:-${TMPDIR:-/tmp}/herald-mercure-conformance}
CHROMIUM_PATH=${CHROMIUM_PATH:-/usr/bin/chromium}
# The secret of the suite's hard-coded publisher token (HS256, 34 bytes: Herald takes 32 or more).
SECRET='!ChangeThisMercureHubJWTSecretKey!'

[ -e "$MERCURE_REPO" ] || { echo "No Mercure repository at $MERCURE_REPO: set MERCURE_REPO" >&2; exit 2; }
[ -x "$CHROMIUM_PATH" ] || { echo "No Chromium at $CHROMIUM_PATH: apt-get install -y chromium, or set CHROMIUM_PATH" >&2; exit 2; }

rm -rf "$WORK"
mkdir -p "$WORK"
git -C "$MERCURE_REPO" archive "$MERCURE_TAG" conformance-tests | tar -x -C "$WORK"
SUITE="$WORK/conformance-tests"
(cd "$SUITE" && npm ci --no-audit --no-fund --loglevel=error)

# The suite's config, narrowed to Chromium and pointed at Debian's build.
cat > "$SUITE/herald.config.ts" <<EOF
import base from "./playwright.config";
export default {
  ...base,
  reporter: "list",
  projects: [
    {
      name: "chromium",
      use: {
        ...base.projects?.[0]?.use,
        launchOptions: {
          executablePath: "$CHROMIUM_PATH",
          args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
        },
      },
    },
  ],
};
EOF

(cd "$ROOT" && npm run build --silent)
PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
PORT=$PORT HOST=127.0.0.1 PUBLISHER_JWT_KEY="$SECRET" SUBSCRIBER_JWT_KEY="$SECRET" LOG_LEVEL=${LOG_LEVEL:-warn} \
  BROKER=${BROKER:-memory} DATABASE_PATH="$WORK/herald.db" REDIS_PREFIX="conformance-$$" \
  node "$ROOT/dist/main.js" &
HERALD_PID=$!
trap 'kill "$HERALD_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done

cd "$SUITE"
BASE_URL="http://127.0.0.1:$PORT/.well-known/mercure" CUSTOM_ID=1 npx playwright test --config herald.config.ts
