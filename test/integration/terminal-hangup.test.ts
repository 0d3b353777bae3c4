import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Dispatcher } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { MAIN } from "../helpers/process.js";
import { openStream } from "../helpers/stream.js";
import { createCertificate, tlsAgent } from "../helpers/tls.js";
import { waitFor } from "../helpers/wait.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** True while `pid` runs; a zombie (exited, not yet reaped by whoever adopted it) has ended. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // The state follows the command name, which is in parentheses and may hold spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/**
 * Runs `node dist/main.js` on a terminal of its own, as a person does from a shell or over SSH:
 * `script` makes a pseudo-terminal, and Herald, exec'd, leads the session it controls. Its stderr
 * goes to a file, so that whatever Herald says once the terminal is gone can still be read.
 */
async function runOnTerminal(env: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), "herald-hangup-"));
  const stderrFile = join(dir, "stderr.txt");
  const script: ChildProcess = spawn(
    "script",
    ["-qefc", `exec ${process.execPath} ${MAIN} 2>${stderrFile}`, "/dev/null"],
    {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: "0", TERM: "dumb", ...env },
    },
  );
  let out = "";
  script.stdout?.on("data", (chunk) => {
    out += chunk;
  });
  let pid: number | undefined;
  cleanups.push(() => {
    script.kill("SIGKILL");
    if (pid !== undefined && isRunning(pid)) process.kill(pid, "SIGKILL");
  });
  const url = await waitFor(
    "the summary on the terminal",
    () => /listening at (https?:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1],
    15_000,
  );
  // With `exec`, Herald is the process `script` started.
  pid = Number(spawnSync("pgrep", ["-P", String(script.pid)], { encoding: "utf8" }).stdout.trim());
  expect(pid).toBeGreaterThan(0);
  return { url, pid, script, stderr: () => readFileSync(stderrFile, "utf8") };
}

async function hangUpAndExpectShutdown(env: Record<string, string>, dispatcher?: Dispatcher) {
  const herald = await runOnTerminal(env);
  const stream = await openStream(`${herald.url}/events`, {}, { dispatcher });
  cleanups.push(() => stream.close());
  await stream.until("the stream to open", (s) => s.retry !== undefined);

  // The terminal goes away with its process, as when an SSH connection drops or a window is closed:
  // the kernel hangs the terminal up and sends SIGHUP to Herald, the session leader.
  herald.script.kill("SIGKILL");

  await waitFor("Herald to exit by itself", () => !isRunning(herald.pid), 15_000).catch((err: Error) => {
    throw new Error(`${err.message}; its stderr:\n${herald.stderr()}`);
  });
  // A graceful shutdown: the stream was ended, not cut, and Node did not crash on the way out.
  await stream.until("the stream to end", (s) => s.ended);
  expect(stream.endedBy).toBe("server");
  expect(herald.stderr()).toBe("");
}

describe("a terminal that hangs up", () => {
  it("shuts Herald down as SIGTERM does: streams ended, a clean exit", async () => {
    await hangUpAndExpectShutdown({});
  });

  it("with TLS, where SIGHUP reloads the certificate, shuts Herald down too once the logs cannot reach the terminal", async () => {
    const certificate = createCertificate();
    const dispatcher = tlsAgent(certificate.cert, false);
    cleanups.push(() => dispatcher.destroy());
    await hangUpAndExpectShutdown(
      { TLS_CERT_FILE: certificate.certFile, TLS_KEY_FILE: certificate.keyFile },
      dispatcher,
    );
  });
});
