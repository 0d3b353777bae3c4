import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** What `npm start` runs. */
export const MAIN = resolve("dist/main.js");

export interface HeraldProcess {
  child: ChildProcess;
  url: Promise<string>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout: () => string;
  stderr: () => string;
}

/**
 * Runs `node dist/main.js` (what `npm start` runs) in a fresh directory, so no `.env` of the
 * developer's leaks in. `url` resolves from the first line that says where it listens (Fastify's
 * "Server listening at", or the start-up summary, which shows at every level but silent).
 */
export function runHerald(env: Record<string, string>, cwd = mkdtempSync(join(tmpdir(), "herald-"))): HeraldProcess {
  const child = spawn(process.execPath, [MAIN], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: "0", ...env },
  });
  let stdout = "";
  let stderr = "";
  const url = new Promise<string>((resolveUrl, reject) => {
    child.stdout?.on("data", (chunk) => {
      stdout += chunk;
      const match = /listening at (https?:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
      if (match?.[1]) resolveUrl(match[1]);
    });
    child.once("exit", () => reject(new Error(`herald exited before listening:\n${stderr}`)));
  });
  url.catch(() => {});
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) =>
    child.once("exit", (code, signal) => resolveExit({ code, signal })),
  );
  return { child, url, exit, stdout: () => stdout, stderr: () => stderr };
}
