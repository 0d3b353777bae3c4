import { readFileSync } from "node:fs";

/**
 * `.env.example` is the one table of Herald's settings: each variable with its default and what it
 * does. `--help` is printed from it, and tests hold the README's configuration table and
 * `loadConfig` to it, so the three cannot drift apart. It ships next to `dist/` (the package has no
 * `files` list), as the dashboard's `web/` does.
 */
export const ENV_EXAMPLE_URL = new URL("../.env.example", import.meta.url);

/** One variable of `.env.example`. */
export interface Setting {
  name: string;
  /** The value `.env.example` gives it: the default; "" for a setting that is unset by default. */
  example: string;
  /** Its comment lines, joined. */
  description: string;
}

/** A group of settings under a `# --- Title ---` line (the first group has no title). */
export interface SettingsSection {
  title: string | undefined;
  settings: Setting[];
}

const SECTION = /^#\s*---\s*(.*?)\s*-*\s*$/;
const VARIABLE = /^([A-Z][A-Z0-9_]*)=(.*)$/;

/**
 * Reads `.env.example` text into sections of settings. A variable's description is the run of
 * comment lines just above it; a blank line ends a run, so the file's opening comment is no one's.
 */
export function parseSettings(text: string): SettingsSection[] {
  const sections: SettingsSection[] = [{ title: undefined, settings: [] }];
  let comment: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const section = SECTION.exec(line);
    const variable = VARIABLE.exec(line);
    if (line === "") comment = [];
    else if (section) {
      sections.push({ title: section[1], settings: [] });
      comment = [];
    } else if (line.startsWith("#")) comment.push(line.replace(/^#\s?/, ""));
    else if (variable?.[1] !== undefined) {
      sections.at(-1)?.settings.push({ name: variable[1], example: variable[2] ?? "", description: comment.join(" ") });
      comment = [];
    }
  }
  return sections.filter((s) => s.settings.length > 0);
}

/** Herald's settings, from the `.env.example` that ships with it. */
export function readSettings(): SettingsSection[] {
  return parseSettings(readFileSync(ENV_EXAMPLE_URL, "utf8"));
}
