import { existsSync } from "node:fs";
import type { BrowserContext, Page } from "playwright-core";
import { CHROMIUM_PATH, launchChromium as launch } from "../../scripts/chromium.mjs";

/**
 * True when the browser tests cannot run here and may be skipped: no Chromium, and not in CI.
 * In CI (`CI=true`) a missing Chromium is never a skip: the tests run and fail saying why.
 */
export function skipBrowserTests(): boolean {
  if (existsSync(CHROMIUM_PATH) || process.env.CI === "true") return false;
  console.warn(`skipped: no Chromium at ${CHROMIUM_PATH} (apt-get install -y chromium); in CI this is a failure`);
  return true;
}

export interface Chromium {
  context: BrowserContext;
  /** A new tab that records uncaught page errors in `errors`. */
  newPage(): Promise<Page & { errors: Error[] }>;
  close(): Promise<void>;
}

/** Launches headless Chromium with a fresh profile, removed again by `close()`; `ignoreHTTPSErrors` trusts self-signed certificates. */
export async function launchChromium(options: { ignoreHTTPSErrors?: boolean } = {}): Promise<Chromium> {
  const { context, close } = await launch(options);
  // Shorter than the test timeout, so a failed wait says what it waited for.
  context.setDefaultTimeout(15_000);
  return {
    context,
    async newPage() {
      const page = Object.assign(await context.newPage(), { errors: [] as Error[] });
      page.on("pageerror", (err) => page.errors.push(err));
      return page;
    },
    close,
  };
}
