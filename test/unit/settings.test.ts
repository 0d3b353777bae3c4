import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { resolveLogFormat } from "../../src/logger.js";
import { parseSettings, readSettings } from "../../src/settings.js";
import { describeStartup, redactUrl, summaryLines } from "../../src/startup-summary.js";

const names = () => readSettings().flatMap((s) => s.settings.map((setting) => setting.name));

describe(".env.example, the one table of settings", () => {
  it("reads each variable with its default and the comment lines above it, in sections", () => {
    const sections = parseSettings(
      "# File intro.\n\n# Port.\n# More.\nPORT=3000\n\n# --- Security (see README). ---\n# A key.\nKEY=\n",
    );
    expect(sections).toEqual([
      { title: undefined, settings: [{ name: "PORT", example: "3000", description: "Port. More." }] },
      { title: "Security (see README).", settings: [{ name: "KEY", example: "", description: "A key." }] },
    ]);
  });

  it("lists every variable that loadConfig reads", () => {
    const source = readFileSync("src/config.ts", "utf8");
    const read = new Set(
      [...source.matchAll(/\benv(?:\.|\[")([A-Z][A-Z0-9_]+)|\(env, "([A-Z][A-Z0-9_]+)"/g)].map((m) => m[1] ?? m[2]),
    );
    expect(read.size).toBeGreaterThan(20);
    expect([...read].filter((name) => !names().includes(name as string))).toEqual([]);
  });

  it("matches the README's configuration table, variable for variable", () => {
    const readme = readFileSync("README.md", "utf8");
    const table = readme.slice(readme.indexOf("## Configuration"), readme.indexOf("## Security"));
    const documented = [...table.matchAll(/^\| `([A-Z][A-Z0-9_]+)`/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(names().sort());
  });
});

describe("the start-up summary", () => {
  it("never shows a Redis password", () => {
    expect(redactUrl("redis://:hunter2@10.0.0.5:6379/2")).toBe("redis://:***@10.0.0.5:6379/2");
    expect(redactUrl("rediss://herald:hunter2@redis.example:6380")).toBe("rediss://herald:***@redis.example:6380");
    expect(redactUrl("redis://10.0.0.5:6379")).toBe("redis://10.0.0.5:6379");
    const config = { ...DEFAULT_CONFIG, broker: "redis" as const, redisUrl: "redis://:hunter2@10.0.0.5:6379" };
    const summary = describeStartup(config, "http://127.0.0.1:3000", "1.2.3");
    expect(summary.broker).toEqual({ kind: "redis", target: "redis://:***@10.0.0.5:6379", prefix: "herald" });
    expect(JSON.stringify(summary) + summaryLines(summary).join("\n")).not.toContain("hunter2");
  });

  it("says which limits are off", () => {
    const config = { ...DEFAULT_CONFIG, maxConnections: 0, publishRateLimit: 0 };
    const lines = summaryLines(describeStartup(config, "http://127.0.0.1:3000", "1.2.3")).join("\n");
    expect(lines).toContain("streams  no limit in all (MAX_CONNECTIONS, /stats/stream watchers included)");
    expect(lines).toContain("publish  no limit a minute per client (PUBLISH_RATE_LIMIT)");
  });
});

describe("LOG_FORMAT", () => {
  it("auto is pretty on a terminal and JSON otherwise; pretty and json are what they say", () => {
    expect(resolveLogFormat("auto", true)).toBe("pretty");
    expect(resolveLogFormat("auto", false)).toBe("json");
    expect(resolveLogFormat("json", true)).toBe("json");
    expect(resolveLogFormat("pretty", false)).toBe("pretty");
  });
});
