import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { monoMs } from "./storm-protocol.js";

const WATCHDOG = fileURLToPath(new URL("./watchdog.js", import.meta.url));
const MAIN = fileURLToPath(new URL("../dist/main.js", import.meta.url));
/** `utime` and `stime` in /proc/<pid>/stat are in these ticks. */
const TICKS_PER_S = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

const running = new Set<ChildProcess>();

/** Kills every Herald still running, at once (also safe in an exit handler). */
export function killAllHeralds(): void {
  for (const child of running) child.kill("SIGKILL");
}

/**
 * One Herald process (`dist/main.js`) on a port chosen by the caller, so that a restart comes back
 * where its clients look for it (`server-process.ts` picks a new port each time and stops with
 * SIGTERM; a storm needs the same port and SIGKILL).
 */
export class HeraldProcess {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  readonly pid: number;
  readonly port: number;
  /** `monoMs()` when the process was spawned, and when it logged that it is listening. */
  readonly spawnedAt: number;
  readonly ready: Promise<number>;
  #stderr = "";

  constructor(port: number, env: Record<string, string>, timeoutMs: number, nodeArgs: string[] = []) {
    this.port = port;
    this.spawnedAt = monoMs();
    this.#child = spawn(process.execPath, [...nodeArgs, "--import", WATCHDOG, MAIN], {
      // Not the checkout: Herald reads a .env from its working directory.
      cwd: tmpdir(),
      env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: String(port), LOG_FORMAT: "json", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const child = this.#child;
    running.add(child);
    this.pid = child.pid as number;
    this.#exited = new Promise((resolve) => child.once("exit", () => resolve()));
    child.once("exit", () => running.delete(child));
    child.stderr?.on("data", (chunk) => {
      this.#stderr = (this.#stderr + chunk).slice(-4_000);
    });
    this.ready = new Promise((resolve, reject) => {
      let out = "";
      let settled = false;
      const timer = setTimeout(() => fail(`did not start within ${timeoutMs} ms`), timeoutMs);
      const fail = (why: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.kill("SIGKILL");
        reject(new Error(`Herald on ${port} ${why}:\n${out.slice(-2_000)}${this.#stderr}`));
      };
      child.once("exit", (code, signal) => fail(`exited (${code ?? signal})`));
      child.stdout?.on("data", (chunk) => {
        if (settled) return;
        out = (out + chunk).slice(-8_000);
        // The start-up summary is logged once `listen` has resolved (main.ts), at every level but silent.
        if (out.includes("listening at http")) {
          settled = true;
          clearTimeout(timer);
          resolve(monoMs());
        }
      });
    });
    // Warnings and errors go to stdout as JSON lines; keep the last few for the report (not the
    // start-up warnings about unset keys, which every run of the bench has).
    child.stdout?.on("data", (chunk) => {
      for (const line of String(chunk).split("\n")) {
        if (/"level":[4-6]0/.test(line) && !line.includes("JWT_KEY is not set")) {
          this.#stderr = `${this.#stderr}${line}\n`.slice(-4_000);
        }
      }
    });
  }

  /** The last warnings and errors the process logged. */
  get log(): string {
    return this.#stderr;
  }

  /** User + system CPU seconds of the process so far; undefined once it is gone. */
  cpuSeconds(): number | undefined {
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
    } catch {
      return undefined;
    }
  }

  /** Seconds the process's main thread has spent runnable but waiting for a CPU (/proc/<pid>/schedstat). */
  waitSeconds(): number | undefined {
    try {
      return Number(readFileSync(`/proc/${this.pid}/schedstat`, "utf8").split(" ")[1]) / 1e9;
    } catch {
      return undefined;
    }
  }

  rssBytes(): number | undefined {
    try {
      return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"))?.[1]) * 1024;
    } catch {
      return undefined;
    }
  }

  /** SIGTERM (Herald ends its streams and exits, writing a `--cpu-prof` profile), SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.#child.kill("SIGTERM");
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }

  /** SIGKILL, as a crash or an OOM kill would: no stream is ended cleanly. Resolves once it is gone. */
  async kill(): Promise<void> {
    this.#child.kill("SIGKILL");
    await this.#exited;
  }
}
