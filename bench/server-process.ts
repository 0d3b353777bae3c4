import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import type { IdScheme } from "./protocol.js";

/**
 * A server under test: a Node script that listens on 127.0.0.1:$PORT and serves the bench API, or
 * another program (`command`) that does the same its own way.
 */
export interface ServerSpec {
  /** Short name used on the command line and in results. */
  name: string;
  /** What the results table calls it. */
  label: string;
  /** The Node script, run with `node` and the watchdog. */
  script?: string;
  /** Instead of a script: the program to run for a port, in the foreground. */
  command?: (port: number) => ServerCommand;
  env?: Record<string, string>;
  /** Extra `node` options, such as `--cpu-prof` to profile it. */
  nodeArgs?: string[];
  /** More environment for some scenarios, by scenario name. */
  envFor?: Record<string, Record<string, string>>;
  /**
   * Publishes are `POST <path>?topic=<topic>` with the data itself as the body (nchan). Without
   * it, `POST /events` with JSON `{"topic","data"}`.
   */
  rawPublishPath?: string;
  /** How its event ids count (default `sequence`: each ends in 1, 2, 3, …). */
  ids?: IdScheme;
  /** What exactly ran (versions, settings), for the results. */
  about?: string;
}

/**
 * A program other than a Node script, ready to run: it stays in the foreground, stops on SIGTERM,
 * and `cleanUp` removes whatever files it was given once it has exited.
 */
export interface ServerCommand {
  file: string;
  args: string[];
  cleanUp(): void;
}

const WATCHDOG = fileURLToPath(new URL("./watchdog.js", import.meta.url));
/** `utime` and `stime` in /proc/<pid>/stat are in these ticks. */
const TICKS_PER_S = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** A running server process, with what /proc says about it (its own and its child processes'). */
export interface RunningServer {
  spec: ServerSpec;
  pid: number;
  port: number;
  /** User + system CPU time of the server's processes so far (all their threads, never the clients'). */
  cpuSeconds(): number;
  rssBytes(): number;
  /** SIGTERM, then SIGKILL if it has not exited within a second. */
  stop(): Promise<void>;
}

/** Every server started and not yet exited, with what removes its files. */
const running = new Map<ChildProcess, () => void>();

/**
 * The processes a server's process started (nginx's workers; none for Node, whose threads are in
 * its own /proc entry). Synchronous, for an exit handler.
 */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .split(" ")
      .filter((s) => s !== "")
      .map(Number);
  } catch {
    // A kernel without CONFIG_PROC_CHILDREN: scan every process for its parent.
    return readdirSync("/proc")
      .filter((name) => /^\d+$/.test(name))
      .filter((name) => {
        try {
          const stat = readFileSync(`/proc/${name}/stat`, "utf8");
          return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid;
        } catch {
          return false;
        }
      })
      .map(Number);
  }
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** Kills every server still running and its child processes, at once (also safe in an exit handler). */
export function killAllServers(): void {
  for (const [child, cleanUp] of running) {
    if (child.pid !== undefined) for (const pid of childrenOf(child.pid)) kill(pid, "SIGKILL");
    child.kill("SIGKILL");
    cleanUp();
  }
}

function nodeCommand(spec: ServerSpec): ServerCommand {
  if (spec.script === undefined) throw new Error(`${spec.name}: a server needs a script or a command`);
  return {
    file: process.execPath,
    args: [...(spec.nodeArgs ?? []), "--import", WATCHDOG, spec.script],
    cleanUp: () => {},
  };
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
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
  const command = spec.command?.(port) ?? nodeCommand(spec);
  const child = spawn(command.file, command.args, {
    // Not the checkout: Herald reads a .env from its working directory.
    cwd: tmpdir(),
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: String(port), ...spec.env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  running.set(child, command.cleanUp);
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("exit", () => {
    running.delete(child);
    command.cleanUp();
  });
  const pid = child.pid as number;
  /** Reads a /proc file of the server and of each of its child processes still there. */
  const readAll = (file: string) =>
    [pid, ...childrenOf(pid)].flatMap((p) => {
      try {
        return [readFileSync(`/proc/${p}/${file}`, "utf8")];
      } catch (err) {
        if (p === pid) throw err;
        return [];
      }
    });
  const deadline = Date.now() + timeoutMs;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      for (const p of childrenOf(pid)) kill(p, "SIGKILL");
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
      let ticks = 0;
      for (const stat of readAll("stat")) {
        // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        ticks += Number(fields[11]) + Number(fields[12]);
      }
      return ticks / TICKS_PER_S;
    },
    rssBytes() {
      let kb = 0;
      for (const status of readAll("status")) kb += Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]);
      return kb * 1024;
    },
    async stop() {
      if (child.exitCode !== null) return;
      const children = childrenOf(pid);
      child.kill("SIGTERM");
      const timer = setTimeout(() => {
        for (const p of children) kill(p, "SIGKILL");
        child.kill("SIGKILL");
      }, 1_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
