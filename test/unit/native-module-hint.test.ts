import { describe, expect, it } from "vitest";
import { nativeModuleHint } from "../../src/broker/create-broker.js";

/** The error Node 24 throws (word for word) when better-sqlite3 was compiled by `npm ci` on Node 20. */
function dlopenError(message: string): Error {
  return Object.assign(new Error(message), { code: "ERR_DLOPEN_FAILED" });
}

const ABI_MISMATCH = dlopenError(
  "The module '/srv/herald/node_modules/better-sqlite3/build/Release/better_sqlite3.node'\n" +
    "was compiled against a different Node.js version using\n" +
    "NODE_MODULE_VERSION 115. This version of Node.js requires\n" +
    "NODE_MODULE_VERSION 137. Please try re-compiling or re-installing\n" +
    "the module (for instance, using `npm rebuild` or `npm install`).",
);

describe("nativeModuleHint", () => {
  it("names BROKER=sqlite, both ABI versions and the command to run, and keeps the original as cause", () => {
    const hint = nativeModuleHint(ABI_MISMATCH, "v24.22.3");
    expect(hint).toBeInstanceOf(Error);
    expect((hint as Error).message).toBe(
      "BROKER=sqlite needs better-sqlite3 built for the Node.js that runs Herald, but it was compiled for another " +
        "Node.js version (NODE_MODULE_VERSION 115; this Node.js v24.22.3 needs 137). Run `npm rebuild better-sqlite3` " +
        "in Herald's directory with this Node.js (v24.22.3), then start Herald again",
    );
    expect((hint as Error).cause).toBe(ABI_MISMATCH);
  });

  it("gives the same command for other load failures of the compiled part", () => {
    const elf = dlopenError(
      "/srv/herald/node_modules/better-sqlite3/build/Release/better_sqlite3.node: invalid ELF header",
    );
    const hint = nativeModuleHint(elf, "v20.19.0") as Error;
    expect(hint.message).toContain("its compiled part did not load (/srv/herald/");
    expect(hint.message).toContain("invalid ELF header");
    expect(hint.message).toContain("Run `npm rebuild better-sqlite3`");
    expect(hint.cause).toBe(elf);

    const missing = new Error(
      "Could not locate the bindings file. Tried:\n → /srv/herald/node_modules/better-sqlite3/build/better_sqlite3.node",
    );
    const hintMissing = nativeModuleHint(missing, "v20.19.0") as Error;
    expect(hintMissing.message).toContain("BROKER=sqlite");
    expect(hintMissing.message).toContain("its compiled part is missing");
    expect(hintMissing.message).toContain("Run `npm rebuild better-sqlite3`");
    expect(hintMissing.cause).toBe(missing);
  });

  it("returns any other error unchanged", () => {
    const cantOpen = Object.assign(new Error("unable to open database file"), { code: "SQLITE_CANTOPEN" });
    expect(nativeModuleHint(cantOpen)).toBe(cantOpen);
    expect(nativeModuleHint("not an error")).toBe("not an error");
  });
});
