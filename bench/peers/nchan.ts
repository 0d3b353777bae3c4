/**
 * nginx with the nchan module (Debian's `nginx` and `libnginx-mod-nchan`): a C server, and the
 * peer issue 12 names as the one to beat. Never the system service: each start writes a private nginx.conf into a
 * fresh temp dir that is also nginx's prefix (pid, logs, temp files), listens on 127.0.0.1 only,
 * runs nginx in the foreground as the bench's child, and deletes the dir once it has stopped.
 * One worker process, to compare with one Node process. Bench API: `GET /events?topic=t` with
 * `Accept: text/event-stream` streams a topic; `POST /publish?topic=t` publishes its body as the
 * event's data (nchan's own publisher, not JSON). Event ids are nchan's `<unix seconds>:<n>`.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import type { ServerCommand, ServerSpec } from "../server-process.js";

/** What was found of nginx and nchan, or why the peer cannot run. */
export type NchanInstall = { nginx: string; module: string; about: string } | { missing: string };

/** Open files of the worker: 19,000 streams, the publisher's connections, logs; the machine's limit per process. */
const MAX_OPEN_FILES = 20_000;
/** Connection slots of the worker, well above the open files (see the comment in the config). */
const WORKER_CONNECTIONS = 32_768;
/** Where Debian puts the module, when `nginx -V` names no modules path. */
const DEBIAN_MODULES = "/usr/lib/nginx/modules";
const MODULE_FILE = "ngx_nchan_module.so";
/** Debian's own `load_module` lines, read only to find the module. */
const MODULES_ENABLED = "/etc/nginx/modules-enabled";
/** util-linux's setpriv: starts nginx with a parent-death signal, so it stops if the bench is killed outright. */
const SETPRIV = "/usr/bin/setpriv";

/** What `nginx -V` prints (to stderr), or undefined when there is no such program. */
function nginxInfo(nginx: string): string | undefined {
  const result = spawnSync(nginx, ["-V"], { encoding: "utf8" });
  return result.error === undefined && result.status === 0 ? result.stderr : undefined;
}

/**
 * Finds nginx (`/usr/sbin/nginx`, or `nginx` on the PATH) and the nchan module (nginx's modules
 * path, Debian's /usr/lib/nginx/modules, or a `load_module` line in /etc/nginx/modules-enabled).
 * Starts nothing.
 */
export function findNchan(): NchanInstall {
  for (const nginx of ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "nginx"]) {
    const info = nginxInfo(nginx);
    if (info !== undefined) return findModule(nginx, info);
  }
  return { missing: "no nginx (apt-get install nginx libnginx-mod-nchan)" };
}

function findModule(nginx: string, info: string): NchanInstall {
  const modulesPath = /--modules-path=(\S+)/.exec(info)?.[1] ?? DEBIAN_MODULES;
  const candidates = [join(modulesPath, MODULE_FILE), join(DEBIAN_MODULES, MODULE_FILE)];
  if (existsSync(MODULES_ENABLED)) {
    for (const file of readdirSync(MODULES_ENABLED)) {
      const path = /load_module\s+(\S*nchan\S*);/.exec(readFileSync(join(MODULES_ENABLED, file), "utf8"))?.[1];
      // Relative to nginx's compiled-in prefix, where Debian links modules/ to the modules path.
      if (path) candidates.push(isAbsolute(path) ? path : join(modulesPath, path.replace(/^modules\//, "")));
    }
  }
  const module = candidates.find((path) => existsSync(path));
  if (module === undefined) {
    return { missing: `nginx but no nchan module (${candidates[0]}; apt-get install libnginx-mod-nchan)` };
  }
  const nginxVersion = /nginx version: (\S+)/.exec(info)?.[1] ?? "nginx";
  let nchanVersion = "nchan";
  try {
    // "libnginx-mod-nchan\t1:1.3.6+dfsg-2"
    const version = execFileSync("dpkg-query", ["-W", "libnginx-mod-nchan"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).split("\t")[1];
    if (version) nchanVersion = `nchan ${version.trim()} (Debian package)`;
  } catch {
    // Not a Debian install: the module has no version flag of its own.
  }
  return { nginx, module, about: `${nginxVersion} with ${nchanVersion}` };
}

/** The whole configuration, every path inside `dir`. */
function config(dir: string, port: number, module: string): string {
  return `load_module ${module};
daemon off;
master_process on;
# One worker: one process serves every stream, as in each Node server. The master serves nothing.
worker_processes 1;
worker_rlimit_nofile ${MAX_OPEN_FILES};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events {
  # Above the open files: with fewer than 1/16 of these free, nginx starts closing connections to
  # reuse them (at 19,000 streams and 20,000 it closed streams). The open-file limit still holds.
  worker_connections ${WORKER_CONNECTIONS};
}
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # The largest publish (60 KB) stays in memory instead of going through a temp file.
  client_body_buffer_size 64k;
  # Node keeps a keep-alive connection for any number of requests; nginx closes it after 1,000.
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${port};
    location = /events {
      nchan_subscriber eventsource;
      nchan_channel_id $arg_topic;
      # As the other servers do for a client without Last-Event-ID: only what is published from
      # now on (nchan's default, oldest, would first replay the channel's buffer of 10 messages).
      nchan_subscriber_first_message newest;
    }
    location = /publish {
      nchan_publisher http;
      nchan_channel_id $arg_topic;
    }
  }
}
`;
}

/** Writes a private config for `port` and says how to run nginx on it in the foreground. */
function command(install: { nginx: string; module: string }, port: number): ServerCommand {
  const dir = mkdtempSync(join(tmpdir(), "herald-bench-nginx-"));
  // When the bench runs as root, nginx's worker runs as nobody and must reach its temp paths.
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, "nginx.conf"), config(dir, port, install.module));
  const nginx = [install.nginx, "-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")];
  const [file, ...args] = existsSync(SETPRIV) ? [SETPRIV, "--pdeathsig", "TERM", ...nginx] : nginx;
  return {
    file: file as string,
    args,
    cleanUp: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The bench's server entry for nginx+nchan, once `findNchan` has found it. */
export function nchanServer(install: { nginx: string; module: string; about: string }): ServerSpec {
  return {
    name: "nchan",
    label: "nginx+nchan",
    command: (port) => command(install, port),
    rawPublishPath: "/publish",
    ids: "time:tag",
    about: `${install.about}, one worker process; its CPU and RSS are the master's and the worker's together`,
  };
}
