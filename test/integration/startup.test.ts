import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { parseSettings } from "../../src/settings.js";
import { type HeraldProcess, MAIN, runHerald } from "../helpers/process.js";
import { SECRET } from "../helpers/tokens.js";
import { waitFor } from "../helpers/wait.js";

const running: HeraldProcess[] = [];
const servers: Server[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) p.child.kill("SIGKILL");
  for (const s of servers.splice(0)) await new Promise((resolve) => s.close(resolve));
});

const VERSION = (JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version;

/** Runs `node dist/main.js <args>` to its end; a server that started would hang it until the timeout. */
function runToExit(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [MAIN, ...args], {
    cwd: mkdtempSync(join(tmpdir(), "herald-cli-")),
    env: { PATH: process.env.PATH ?? "", PORT: "0", ...env },
    encoding: "utf8",
    timeout: 15_000,
  });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

/** Stops `herald` with SIGTERM and returns everything it wrote to stdout. */
async function stop(herald: HeraldProcess): Promise<string> {
  herald.child.kill("SIGTERM");
  expect(await herald.exit).toEqual({ code: 0, signal: null });
  return herald.stdout();
}

async function get(url: string): Promise<number> {
  const res = await request(url);
  await res.body.dump();
  return res.statusCode;
}

describe("the command line", () => {
  it("--help lists every setting of .env.example with its default, and exits 0 without starting a server", () => {
    // A broken .env or setting must not stand in the way of --help.
    const { status, signal, stdout } = runToExit(["--help"], { PORT: "not a port" });
    expect({ status, signal }).toEqual({ status: 0, signal: null });
    expect(stdout).toMatch(/^Herald \d+\.\d+\.\d+: a Server-Sent Events push service/);
    const settings = parseSettings(readFileSync(".env.example", "utf8")).flatMap((s) => s.settings);
    expect(settings.length).toBeGreaterThan(20);
    for (const { name, example } of settings) {
      expect(stdout).toContain(`  ${name}  (default: ${example === "" ? "unset" : example})`);
    }
    expect(stdout).toContain("auto (pretty when stdout is a terminal, JSON lines otherwise), pretty, or json.");
    expect(runToExit(["-h"]).stdout).toBe(stdout);
  });

  it("--version prints package.json's version and exits 0", () => {
    for (const flag of ["--version", "-v"]) {
      const { status, signal, stdout } = runToExit([flag]);
      expect({ status, signal, stdout }).toEqual({ status: 0, signal: null, stdout: `${VERSION}\n` });
    }
  });

  it("refuses an unknown argument with exit status 2 and a message, rather than starting on port 3000", () => {
    const { status, signal, stdout, stderr } = runToExit(["--port", "8080"]);
    expect({ status, signal, stdout }).toEqual({ status: 2, signal: null, stdout: "" });
    expect(stderr).toContain('herald: unknown arguments "--port", "8080"');
    expect(stderr).toContain("settings are environment variables (PORT=8080 node dist/main.js)");
  });
});

describe("start-up", () => {
  it("prints a summary even at LOG_LEVEL=warn: version, address, broker and target, history, auth, limits", async () => {
    const dir = mkdtempSync(join(tmpdir(), "herald-summary-"));
    const databasePath = join(dir, "events.db");
    const herald = runHerald({
      LOG_LEVEL: "warn",
      BROKER: "sqlite",
      DATABASE_PATH: databasePath,
      HISTORY_SIZE: "500",
      PUBLISHER_JWT_KEY: SECRET,
      PUBLISH_RATE_LIMIT: "0",
    });
    running.push(herald);
    const url = await herald.url;
    const lines = (await stop(herald))
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { level: number; msg: string; summary?: unknown });
    const summary = lines.filter((line) => line.summary !== undefined);
    expect(summary).toHaveLength(1);
    expect(summary[0]?.msg).toBe(`Herald ${VERSION} listening at ${url} (the dashboard is at ${url}/)`);
    expect(summary[0]?.summary).toEqual({
      version: VERSION,
      url,
      broker: { kind: "sqlite", target: databasePath },
      history: { size: 500, ttlS: 0 },
      auth: { publishers: "token", subscribers: "no private events" },
      limits: {
        maxConnections: 10_000,
        maxConnectionsPerIp: 100,
        publishesPerMinute: 0,
        maxTopicsPerStream: 100,
        maxBodyBytes: 1_048_576,
      },
    });
    // warn holds: the summary is the one info line.
    expect(lines.filter((line) => line.level < 40)).toEqual(summary);
  });

  it("says to set PORT when the port is taken, and exits 1", async () => {
    const blocker = createServer();
    servers.push(blocker);
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const { port } = blocker.address() as { port: number };
    const herald = runHerald({ PORT: String(port) });
    running.push(herald);
    expect((await herald.exit).code).toBe(1);
    expect(herald.stderr()).toContain(
      `herald: could not listen: port ${port} on 127.0.0.1 is already in use (another Herald, or another server). Set PORT to a free port`,
    );
  });

  it("asks the kernel for the LISTEN_BACKLOG it is given, 4096 by default (Node's own is 511)", async () => {
    // `ss` shows a listening socket's backlog as its Send-Q; the kernel caps it at somaxconn.
    const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
    const backlogOf = (url: string) => {
      const port = new URL(url).port;
      const out = spawnSync("ss", ["-ltnH", `sport = :${port}`], { encoding: "utf8" }).stdout;
      return Number(out.trim().split(/\s+/)[2]);
    };
    const chosen = runHerald({ LISTEN_BACKLOG: "1234" });
    const byDefault = runHerald({});
    running.push(chosen, byDefault);
    expect(backlogOf(await chosen.url)).toBe(Math.min(1234, somaxconn));
    expect(backlogOf(await byDefault.url)).toBe(Math.min(4096, somaxconn));
  });
});

describe("logs", () => {
  it("log no line per request at the default level", async () => {
    const herald = runHerald({ LOG_LEVEL: "info" });
    running.push(herald);
    const url = await herald.url;
    expect(await get(`${url}/health`)).toBe(200);
    expect(await get(`${url}/stats`)).toBe(200);
    expect(await get(`${url}/nowhere`)).toBe(404);
    const out = await stop(herald);
    expect(out).not.toMatch(/incoming request|request completed|reqId|\/stats|\/health|\/nowhere/);
    expect(out).toContain("shutting down");
  });

  it("log one line per request at LOG_LEVEL=debug, without a query token", async () => {
    const herald = runHerald({ LOG_LEVEL: "debug" });
    running.push(herald);
    const url = await herald.url;
    expect(await get(`${url}/stats`)).toBe(200);
    expect(await get(`${url}/stats?authorization=secret.token.here`)).toBe(200);
    const out = await stop(herald);
    const requests = out
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { level: number; msg: string; reqId?: string })
      .filter((line) => line.reqId !== undefined);
    expect(requests.map((line) => [line.level, line.msg.replace(/ in [\d.]+ ms$/, "")])).toEqual([
      [20, "GET /stats 200"],
      [20, "GET /stats?authorization=[redacted] 200"],
    ]);
    expect(out).not.toContain("secret.token.here");
  });

  it("are JSON lines when stdout is not a terminal, and pretty with LOG_FORMAT=pretty", async () => {
    const json = runHerald({});
    running.push(json);
    await json.url;
    for (const line of (await stop(json)).split("\n").filter(Boolean)) expect(() => JSON.parse(line)).not.toThrow();

    const pretty = runHerald({ LOG_FORMAT: "pretty" });
    running.push(pretty);
    const url = await pretty.url;
    const out = await stop(pretty);
    expect(out).toMatch(
      new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\] INFO: Herald ${VERSION} listening at ${url}`, "m"),
    );
    expect(out).toContain("\n  broker   memory (history in this process: a restart forgets it)\n");
    expect(out).toContain("\n  auth     anyone may publish (PUBLISHER_JWT_KEY unset);");
    expect(out).not.toContain('"level"');
  });

  it("are pretty by default on a terminal", async () => {
    // `script` gives the process a pseudo-terminal as its stdout, as a shell does.
    const child = spawn("script", ["-qefc", `exec ${process.execPath} ${MAIN}`, "/dev/null"], {
      cwd: mkdtempSync(join(tmpdir(), "herald-tty-")),
      env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: "0", TERM: "dumb" },
    });
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    try {
      await waitFor("the summary on the terminal", () => out.includes("  history  the last 10000 events"), 15_000);
      expect(out).toMatch(/\] .*INFO.*: .*Herald \S+ listening at http:\/\/127\.0\.0\.1:\d+/);
      expect(out).not.toContain('"level"');
    } finally {
      // Herald runs in the terminal `script` made, in a session of its own: killing `script` alone
      // ends it too, but on its own time (terminal-hangup.test.ts). Kill it first.
      spawnSync("pkill", ["-KILL", "-P", String(child.pid)]);
      child.kill("SIGKILL");
    }
  });
});
