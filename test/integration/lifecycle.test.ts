import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { type HeraldProcess, runHerald } from "../helpers/process.js";
import { startServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const running: HeraldProcess[] = [];
afterEach(() => {
  for (const p of running.splice(0)) p.child.kill("SIGKILL");
});

describe("shutdown", () => {
  it("app.close() ends open event and tick streams cleanly instead of hanging on them", async () => {
    const server = await startServer();
    const events = await openStream(`${server.url}/events?topic=*`);
    const ticks = await openStream(`${server.url}/ticks`);
    const curl = spawn("curl", ["-sN", `${server.url}/events`]);
    const curlExit = new Promise<number | null>((resolve) => curl.once("exit", resolve));
    let curlOut = "";
    curl.stdout.on("data", (chunk) => {
      curlOut += chunk;
    });
    await waitFor("curl to connect", () => curlOut.includes("retry:"));
    await ticks.take(1);
    await events.until("the stream to open", (s) => s.retry !== undefined);
    await server.close();
    await events.until("the stream to end", (s) => s.ended);
    await ticks.until("the stream to end", (s) => s.ended);
    expect([events.endedBy, ticks.endedBy]).toEqual(["server", "server"]);
    // curl exits 0 only when the chunked response was ended properly, not cut.
    expect(await curlExit).toBe(0);
  });

  it("on SIGTERM, the process ends its streams and exits 0", async () => {
    const herald = runHerald({ LOG_LEVEL: "info" });
    running.push(herald);
    const url = await herald.url;
    const stream = await openStream(`${url}/events`);
    await stream.until("the stream to open", (s) => s.retry !== undefined);
    const published = await request(`${url}/events`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "data=before+shutdown",
    });
    expect(published.statusCode).toBe(201);
    await stream.take(1);
    herald.child.kill("SIGTERM");
    // close-with-grace exits 1 if closing takes longer than its grace period; 0 means close finished.
    expect(await herald.exit).toEqual({ code: 0, signal: null });
    await stream.until("the stream to end", (s) => s.ended);
    expect(herald.stdout()).toContain("shutting down");
  });
});

describe("forced exit", () => {
  it("exits 1 once the 5 s shutdown grace is over when closing hangs on an unfinished request", async () => {
    const herald = runHerald({ LOG_LEVEL: "info" });
    running.push(herald);
    const { hostname, port } = new URL(await herald.url);
    // A publish whose body never finishes: the server cannot close while it waits for the rest.
    const socket = connect(Number(port), hostname);
    socket.on("error", () => {});
    await new Promise((resolve) => socket.once("connect", resolve));
    // Expect: 100-continue makes Node answer "100 Continue" once it has parsed the headers: proof
    // that the request reached the server (request lines are no longer logged at info).
    let received = "";
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString();
    });
    socket.write(
      `POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n`,
    );
    await waitFor("the request to reach the server", () => received.includes("100 Continue"));
    socket.write(`{"data":`);
    const signalledAt = Date.now();
    herald.child.kill("SIGTERM");
    const exit = await herald.exit;
    const took = Date.now() - signalledAt;
    socket.destroy();
    expect(exit).toEqual({ code: 1, signal: null });
    expect(herald.stdout() + herald.stderr()).toContain("killed by timeout (5000ms)");
    // Not before the grace period (timers fire late, never early); the upper bound is loose for a loaded machine.
    expect(took).toBeGreaterThanOrEqual(5_000);
    expect(took).toBeLessThan(20_000);
  });
});

describe("start-up configuration", () => {
  it("refuses a bad value, naming the variable and what it accepts", async () => {
    const herald = runHerald({ PORT: "abc" });
    running.push(herald);
    expect((await herald.exit).code).toBe(1);
    expect(herald.stderr()).toContain('PORT="abc" is invalid: use a whole number from 0 to 65535');
  });

  it("reads .env from the working directory, with the environment taking precedence", async () => {
    const dir = mkdtempSync(join(tmpdir(), "herald-env-"));
    writeFileSync(join(dir, ".env"), "TICK_MS=5\nRETRY_MS=1234\nRETRY_JITTER_MS=0\n");
    const bad = runHerald({}, dir);
    running.push(bad);
    expect((await bad.exit).code).toBe(1);
    expect(bad.stderr()).toContain('TICK_MS="5" is invalid: use a whole number from 100 to 60000');

    const good = runHerald({ TICK_MS: "500" }, dir);
    running.push(good);
    const stream = await openStream(`${await good.url}/events`);
    await stream.until("the retry line", (s) => s.retry !== undefined);
    expect(stream.retry).toBe(1234);
    stream.close();
  });
});
