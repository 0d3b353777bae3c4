// Headless Chromium for the browser tests, the screenshot and the dashboard benchmark: Debian's
// build at /usr/bin/chromium (`npx playwright install` cannot work here), driven by playwright-core.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

/** Debian's Chromium (`apt-get install -y chromium`); `CHROMIUM_PATH` points elsewhere. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Headless and quiet: no sandbox (containers), no GPU, no background traffic or first-run UI. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-sync",
];

/**
 * Launches headless Chromium with a fresh profile (removed again by `close()`). Throws, saying
 * how to install it, when there is no Chromium at `CHROMIUM_PATH`. `ignoreHTTPSErrors` accepts
 * self-signed certificates (tests of Herald over HTTPS).
 */
export async function launchChromium({
  viewport = { width: 1280, height: 900 },
  colorScheme = "light",
  ignoreHTTPSErrors = false,
} = {}) {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`No Chromium at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  const profile = mkdtempSync(join(tmpdir(), "herald-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    colorScheme,
    ignoreHTTPSErrors,
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
