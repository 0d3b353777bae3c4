import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

const SECRET = "a-test-secret-that-is-32-bytes-long!";

describe("SUBSCRIPTIONS", () => {
  it("is off unless set to true, which needs SUBSCRIBER_JWT_KEY", () => {
    expect(loadConfig({}).subscriptions).toBe(false);
    expect(loadConfig({ SUBSCRIPTIONS: "false" }).subscriptions).toBe(false);
    expect(loadConfig({ SUBSCRIPTIONS: "true", SUBSCRIBER_JWT_KEY: SECRET }).subscriptions).toBe(true);
  });

  it("refuses true without SUBSCRIBER_JWT_KEY, saying which variable to set", () => {
    expect(() => loadConfig({ SUBSCRIPTIONS: "true" })).toThrow(ConfigError);
    expect(() => loadConfig({ SUBSCRIPTIONS: "true" })).toThrow(/SUBSCRIPTIONS=true needs SUBSCRIBER_JWT_KEY/);
  });

  it("refuses anything but true or false, naming the variable", () => {
    expect(() => loadConfig({ SUBSCRIPTIONS: "yes", SUBSCRIBER_JWT_KEY: SECRET })).toThrow(
      'SUBSCRIPTIONS="yes" is invalid: use one of true, false',
    );
  });
});
