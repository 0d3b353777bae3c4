import { describe, expect, it } from "vitest";
import { MemoryBroker } from "../../src/broker/memory-broker.js";
import { describeBrokerContract } from "./broker-contract.js";

describeBrokerContract("MemoryBroker", async (options) => new MemoryBroker(options));

describe("MemoryBroker, across a restart", () => {
  it("does not find an id of the previous run, though the new run has issued as many events", async () => {
    const before = new MemoryBroker({ historySize: 10 });
    const old = (await before.publish({ topic: "t", data: "before" })).event;
    const after = new MemoryBroker({ historySize: 10 });
    const fresh = (await after.publish({ topic: "t", data: "after" })).event;
    expect(fresh.id).not.toBe(old.id);
    expect(await after.locate(old.id)).toMatchObject({ found: false });
    // And the previous run's id is free: a publisher may use it, nothing of this run has it.
    expect(await after.publish({ topic: "t", data: "mine", id: old.id })).toMatchObject({ duplicate: false });
  });
});
