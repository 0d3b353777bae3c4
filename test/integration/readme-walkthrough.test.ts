import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, symlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/wait.js";

/** The shell blocks of README.md marked `<!-- walkthrough: NAME -->`, in order. */
function walkthrough(name: string): string[] {
  const readme = readFileSync("README.md", "utf8");
  const marker = `<!-- walkthrough: ${name} -->`;
  return readme
    .split(marker)
    .slice(1)
    .map((after) => {
      const block = /^\s*```sh\n([\s\S]*?)\n```/.exec(after);
      if (!block?.[1]) throw new Error(`${marker} is not followed by a sh block`);
      return block[1];
    });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

let groups: number[] = [];
afterEach(() => {
  for (const pid of groups) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  groups = [];
});

describe("README, Security: the walkthrough", () => {
  it("works when pasted: keys, tokens, a stream opened first, a private event published and received", async () => {
    const blocks = walkthrough("security");
    expect(blocks).toHaveLength(4);
    const port = await freePort();
    // Herald's directory, as the README assumes, but the files it writes (stream.txt) stay out of the repository.
    const dir = mkdtempSync(join(tmpdir(), "herald-readme-"));
    for (const name of ["dist", "scripts"]) symlinkSync(resolve(name), join(dir, name));
    const script = [
      "set -eo pipefail",
      // dist/ is built once for the whole suite; rebuilding it here would rewrite files other tests are running.
      'npm() { if [ "$1 $2" = "run build" ]; then return 0; fi; command npm "$@"; }',
      ...blocks.map((block) => block.replaceAll("localhost:3000", `localhost:${port}`)),
    ].join("\n");
    const bash = spawn("bash", ["-c", script], {
      cwd: dir,
      detached: true,
      env: { PATH: process.env.PATH ?? "", HOME: dir, PORT: String(port) },
    });
    groups.push(bash.pid as number);
    let stdout = "";
    let stderr = "";
    bash.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    bash.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const code = await new Promise((done) => bash.once("exit", done));
    expect(code, stderr).toBe(0);

    // The publish answered 201 with the private event, and the stream opened before it received it.
    expect(stdout).toMatch(/\{"id":"[^"]+","topic":"orders\/42","private":true,"time":"[^"]+"\}/);
    const streamFile = join(dir, "stream.txt");
    expect(existsSync(streamFile)).toBe(true);
    const stream = await waitFor(
      "the private event in stream.txt",
      () => {
        const text = readFileSync(streamFile, "utf8");
        return text.includes("data: paid") && text;
      },
      10_000,
    );
    expect(stream).toMatch(/^retry: \d+\n\nid: \S+\ndata: paid\n\n$/);
    // RETRY_MS (3000) plus up to half of it in jitter.
    const retry = Number(/^retry: (\d+)/.exec(stream)?.[1]);
    expect(retry).toBeGreaterThanOrEqual(3_000);
    expect(retry).toBeLessThanOrEqual(4_500);
  });
});
