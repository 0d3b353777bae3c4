import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

/** A server under test: a Node script that listens on 127.0.0.1:$PORT and serves the bench API. */
export interface ServerSpec {
  /** Short name used on the command line and in results. */
  name: string;
  /** What the results table calls it. */
  label: string;
  script: string;
  env?: Record<string, string>;
  /** Extra `node` options, such as `--cpu-prof` to profile it. */
  nodeArgs?: string[];
  /** More environment for some scenarios, by scenario name. */
  envFor?: Record<string, Record<string, string>>;
}

const WATCHDOG = fileURLToPath(new URL("./watchdog.js", import.meta.url));
/** `utime` and `stime` in /proc/<pid>/stat are in these ticks. */
const TICKS_PER_S = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** A running server process, with what /proc says about it. */
export interface RunningServer {
  spec: ServerSpec;
  pid: number;
  port: number;
  /** User + system CPU time of the server process so far (all its threads, never the clients'). */
  cpuSeconds(): number;
  rssBytes(): number;
  /** SIGTERM, then SIGKILL if it has not exited within a second. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();

/** Kills every server still running, at once (also safe in an exit handler). */
export function killAllServers(): void {
  for (const child of running) child.kill("SIGKILL");
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Starts `spec` and resolves once it accepts connections, or fails within `timeoutMs`. */
export async function startServer(spec: ServerSpec, timeoutMs: number): Promise<RunningServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [...(spec.nodeArgs ?? []), "--import", WATCHDOG, spec.script], {
    // Not the checkout: Herald reads a .env from its working directory.
    cwd: tmpdir(),
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: String(port), ...spec.env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  running.add(child);
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("exit", () => running.delete(child));
  const pid = child.pid as number;
  const deadline = Date.now() + timeoutMs;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${spec.name} did not start listening on ${port}:\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    spec,
    pid,
    port,
    cpuSeconds() {
      // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
    },
    rssBytes() {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 1_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
