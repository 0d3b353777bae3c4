/**
 * Where the memory of an idle stream goes. Starts a server (Herald's dist/main.js by default, or a
 * peer), opens `--warm` streams and takes a heap snapshot, opens `--streams` more and takes
 * another, then prints what one stream adds to the V8 heap, in all and by constructor (the self
 * size of every object of that name in the second snapshot minus the first, ÷ the streams opened).
 * Node's C++ objects that report their size to V8 (the TCP handle) show up under their names too;
 * other native memory (libuv, malloc) does not. A heap snapshot collects garbage first, so these
 * are live objects only. RSS is not measured here (a snapshot itself takes hundreds of MB): that is
 * `npm run bench:idle`. Usage:
 *   npm run bench:idle-heap [-- --streams 5000 --warm 200 --top 25 --path /events?topic=bench
 *                              --server herald|plain-http|fastify-sse|better-sse --main <another build's dist/main.js>]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startServer } from "./server-process.js";

const { values: args } = parseArgs({
  options: {
    streams: { type: "string", default: "5000" },
    warm: { type: "string", default: "200" },
    server: { type: "string", default: "herald" },
    top: { type: "string", default: "25" },
    path: { type: "string", default: "/events?topic=bench" },
    main: { type: "string" },
  },
});

const root = (path: string) => new URL(`../${path}`, import.meta.url).pathname;
const SCRIPTS: Record<string, string> = {
  herald: args.main ?? root("dist/main.js"),
  "plain-http": new URL("./peers/plain-http.js", import.meta.url).pathname,
  "fastify-sse": new URL("./peers/fastify-sse.js", import.meta.url).pathname,
  "better-sse": new URL("./peers/better-sse.js", import.meta.url).pathname,
};
const script = SCRIPTS[args.server];
if (script === undefined) throw new Error(`unknown server ${args.server}: use ${Object.keys(SCRIPTS).join(", ")}`);
const STREAMS = Number(args.streams);
const WARM = Number(args.warm);
const TOP = Number(args.top);
/** Opened at once, below Node's listen backlog of 511. */
const AT_ONCE = 200;
const HEAD_END = "\r\n\r\n";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

const dir = mkdtempSync(join(tmpdir(), "herald-idle-heap-"));
const server = await startServer(
  {
    name: args.server,
    label: args.server,
    script,
    // Not SIGUSR2: Herald shuts down on it (close-with-grace).
    nodeArgs: ["--heapsnapshot-signal=SIGWINCH", `--diagnostic-dir=${dir}`],
    env: { LOG_LEVEL: "warn", MAX_CONNECTIONS: "0", MAX_CONNECTIONS_PER_IP: "0", PUBLISH_RATE_LIMIT: "0" },
  },
  15_000,
);
const sockets: Socket[] = [];
process.on("exit", () => {
  for (const socket of sockets) socket.destroy();
  rmSync(dir, { recursive: true, force: true });
});

/** One stream: resolves once the response head has arrived; the socket is then never read again. */
function openStream(): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(server.port, "127.0.0.1");
    sockets.push(socket);
    let head = "";
    const onData = (chunk: Buffer) => {
      head += chunk.toString("latin1");
      if (!head.includes(HEAD_END)) return;
      if (!head.startsWith("HTTP/1.1 200")) reject(new Error(`refused: ${head.split("\r\n")[0]}`));
      socket.off("data", onData);
      resolve();
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.write(`GET ${args.path} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nAccept: text/event-stream\r\n\r\n`);
  });
}

async function openStreams(count: number): Promise<void> {
  for (let done = 0; done < count; ) {
    const batch = Math.min(AT_ONCE, count - done);
    await Promise.all(Array.from({ length: batch }, openStream));
    done += batch;
  }
}

/** Takes a heap snapshot of the server and returns its file, once written. */
async function snapshot(): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(server.pid, "SIGWINCH");
  for (;;) {
    await sleep(500);
    const file = readdirSync(dir).find((name) => !before.has(name) && name.endsWith(".heapsnapshot"));
    if (file === undefined) continue;
    // Written in one go, then closed: wait until its size stops changing.
    const path = join(dir, file);
    let size = -1;
    for (;;) {
      await sleep(500);
      const now = readFileSync(path).length;
      if (now === size && now > 0) return path;
      size = now;
    }
  }
}

interface Totals {
  bytes: Map<string, number>;
  counts: Map<string, number>;
  total: number;
}

/** Self size and count of the snapshot's objects, by `type:name` (constructor name for objects). */
function totals(path: string): Totals {
  const data = JSON.parse(readFileSync(path, "utf8"));
  rmSync(path);
  const fields: string[] = data.snapshot.meta.node_fields;
  const types: string[] = data.snapshot.meta.node_types[0];
  const strings: string[] = data.strings;
  const nodes: number[] = data.nodes;
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const bytes = new Map<string, number>();
  const counts = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt] as number] as string;
    let name = strings[nodes[i + nameAt] as number] as string;
    // Strings, code and arrays are grouped by type: their names are their contents.
    if (type === "string" || type === "concatenated string" || type === "sliced string") name = "(string)";
    else if (type === "code" || type === "number" || type === "array" || type === "hidden") name = `(${type})`;
    else if (type === "closure") name = `${name}()`;
    else if (name.length > 60) name = `${name.slice(0, 57)}...`;
    const key = `${type === "object" || type === "closure" ? "" : `${type} `}${name}`;
    const size = nodes[i + sizeAt] as number;
    bytes.set(key, (bytes.get(key) ?? 0) + size);
    counts.set(key, (counts.get(key) ?? 0) + 1);
    total += size;
  }
  return { bytes, counts, total };
}

console.error(`${args.server}: warming up with ${WARM} streams (load ${load()})`);
await openStreams(WARM);
const first = totals(await snapshot());
console.error(`opening ${STREAMS} more`);
await openStreams(STREAMS);
const second = totals(await snapshot());
await server.stop();

const kb = (bytes: number) => (bytes / 1024).toFixed(3);
const rows = [...second.bytes.keys()]
  .map((key) => ({
    key,
    bytes: ((second.bytes.get(key) ?? 0) - (first.bytes.get(key) ?? 0)) / STREAMS,
    count: ((second.counts.get(key) ?? 0) - (first.counts.get(key) ?? 0)) / STREAMS,
  }))
  .filter((row) => Math.abs(row.bytes) >= 1)
  .sort((a, b) => b.bytes - a.bytes);
const shown = rows.slice(0, TOP);
const rest = rows.slice(TOP).reduce((sum, row) => sum + row.bytes, 0);

console.log(
  `${args.server} (${script}), GET ${args.path}: ${STREAMS} idle streams after ${WARM}; Node ${process.version}, ${cpus().length} cores; load ${load()} at the end`,
);
console.log("");
console.log(`V8 heap (live objects) per stream: ${kb((second.total - first.total) / STREAMS)} KB`);
console.log("");
console.log("| constructor (or type) | bytes per stream | objects per stream |");
console.log("| --- | ---: | ---: |");
for (const row of shown) console.log(`| ${row.key} | ${row.bytes.toFixed(0)} | ${row.count.toFixed(2)} |`);
console.log(`| everything else | ${rest.toFixed(0)} | |`);
