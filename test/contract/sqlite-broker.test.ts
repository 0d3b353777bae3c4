import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";
import { describeBrokerContract } from "./broker-contract.js";

describeBrokerContract("SqliteBroker", async (options) =>
  SqliteBroker.open({ ...options, path: join(mkdtempSync(join(tmpdir(), "herald-sqlite-")), "herald.db") }),
);
