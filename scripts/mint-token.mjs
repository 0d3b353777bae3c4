#!/usr/bin/env node
// Mints an HS256 test token for Herald, in the Mercure claim shape, and prints it.
//
//   node scripts/mint-token.mjs --publish 'orders/{id}'      signed with $PUBLISHER_JWT_KEY
//   node scripts/mint-token.mjs --subscribe 'orders/{id}'    signed with $SUBSCRIBER_JWT_KEY
//
// A token that may publish is signed with PUBLISHER_JWT_KEY, one that may only subscribe with
// SUBSCRIBER_JWT_KEY (--key-env NAME picks another variable). Repeat --publish or --subscribe for
// several topics. --sub NAME sets the subject (publish rate limits count per subject), --expires
// the lifetime (default 1h; 30s, 15m, 2d...). For RS256 or ES256 keys, sign with the private key
// in your own tooling: Herald only ever holds the public key.
import { parseArgs } from "node:util";
import { SignJWT } from "jose";

const USAGE =
  "usage: node scripts/mint-token.mjs [--publish TOPIC]... [--subscribe TOPIC]... [--sub NAME] [--expires 1h] [--key-env NAME]";

function fail(message) {
  process.stderr.write(`mint-token: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let options;
try {
  ({ values: options } = parseArgs({
    options: {
      publish: { type: "string", multiple: true, default: [] },
      subscribe: { type: "string", multiple: true, default: [] },
      sub: { type: "string" },
      expires: { type: "string", default: "1h" },
      "key-env": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  }));
} catch (err) {
  fail(err.message);
}
if (options.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (options.publish.length === 0 && options.subscribe.length === 0) {
  fail("give at least one --publish or --subscribe topic ('*' for every topic)");
}

const keyEnv = options["key-env"] ?? (options.publish.length > 0 ? "PUBLISHER_JWT_KEY" : "SUBSCRIBER_JWT_KEY");
const key = process.env[keyEnv]?.trim() ?? "";
if (key === "") {
  fail(`${keyEnv} is empty: create a key and export it first, e.g. export ${keyEnv}=$(openssl rand -hex 32)`);
}
if (key.startsWith("-----BEGIN")) {
  fail(`${keyEnv} is a PEM public key: sign RS256/ES256 tokens with the matching private key in your own tooling`);
}

const claims = { mercure: { publish: options.publish, subscribe: options.subscribe } };
let jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt().setExpirationTime(options.expires);
if (options.sub !== undefined) jwt = jwt.setSubject(options.sub);
try {
  process.stdout.write(`${await jwt.sign(new TextEncoder().encode(key))}\n`);
} catch (err) {
  fail(err.message);
}
