import { readFileSync } from "node:fs";
import { readSettings, type SettingsSection } from "./settings.js";

/** Herald's version, from its `package.json`. */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/** Exit status for a command line Herald does not understand (as `getopt` tools use). */
export const USAGE_EXIT_CODE = 2;

const WIDTH = 96;

function wrap(text: string, indent: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line !== "" && indent.length + line.length + 1 + word.length > WIDTH) {
      lines.push(indent + line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "") lines.push(indent + line);
  return lines;
}

/** The `--help` text: how Herald is started and every setting from `sections`, with its default. */
export function helpText(sections: readonly SettingsSection[] = readSettings()): string {
  const out = [
    `Herald ${VERSION}: a Server-Sent Events push service.`,
    "",
    "Usage: node dist/main.js [--help | --version]      (npm start builds, then runs it)",
    "",
    ...wrap(
      "Herald takes no other arguments. Every setting is an environment variable, or a line of a .env file in " +
        "the working directory (the environment wins over .env). A bad value stops start-up with a message " +
        "naming the variable. Example: PORT=8080 LOG_LEVEL=debug node dist/main.js",
      "",
    ),
  ];
  for (const section of sections) {
    out.push("");
    out.push(...wrap(section.title ?? "Settings, with their defaults:", ""), "");
    for (const setting of section.settings) {
      out.push(`  ${setting.name}  (default: ${setting.example === "" ? "unset" : setting.example})`);
      out.push(...wrap(setting.description, "      "));
    }
  }
  out.push("", "Options:", "  -h, --help     this text", "  -v, --version  the version", "");
  out.push("Docs: README.md (Quick start, HTTP API, Security, Configuration).");
  return `${out.join("\n")}\n`;
}

/** What the command line asks for: start the server, or answer and exit with `exitCode`. */
export type CommandLine = { run: true } | { run: false; exitCode: number; stdout?: string; stderr?: string };

/**
 * Reads Herald's arguments (`process.argv.slice(2)`): `--help` and `--version` answer without
 * starting a server; anything else is a usage error (exit 2), so a mistyped option never starts a
 * server on the default port unnoticed.
 */
export function parseCommandLine(args: readonly string[]): CommandLine {
  if (args.length === 0) return { run: true };
  const [first] = args;
  const unknown = args.filter((a) => !["-h", "--help", "-v", "--version"].includes(a));
  if (unknown.length > 0) {
    const what = unknown.map((a) => JSON.stringify(a.slice(0, 100))).join(", ");
    return {
      run: false,
      exitCode: USAGE_EXIT_CODE,
      stderr:
        `herald: unknown argument${unknown.length > 1 ? "s" : ""} ${what}. Herald takes only --help and --version; ` +
        "settings are environment variables (PORT=8080 node dist/main.js). Run node dist/main.js --help for the list.\n",
    };
  }
  if (first === "-v" || first === "--version") return { run: false, exitCode: 0, stdout: `${VERSION}\n` };
  return { run: false, exitCode: 0, stdout: helpText() };
}
