import { MemoryBroker } from "../../src/broker/memory-broker.js";
import { describeBrokerContract } from "./broker-contract.js";

describeBrokerContract("MemoryBroker", async (options) => new MemoryBroker(options));
