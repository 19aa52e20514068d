// The rules, tested natively with Node's test runner (`npm test`): no WebAssembly needed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { username, groups, meta, parseConfig } from "../plugin.js";

const ctx = { tenant: "t", idp: "okta", idpKind: "okta", operation: "create" };
const config = JSON.stringify({ domains: ["acme.com"], groups: { "Dev users": "software_dev" }, defaults: ["app-users"] });
const user = (email) => JSON.stringify({ userName: "x", emails: [{ value: email, primary: true }] });

test("the username is the email's local part, lower-cased", () => {
  const d = username.decide(ctx, config, user("Jane.Doe@acme.com"), "x", undefined);
  assert.equal(d.userName, "jane.doe");
  assert.equal(d.provenance.rule, "acme.local-part");
});

test("other domains and users without email are refused", () => {
  assert.throws(() => username.decide(ctx, config, user("jane@example.org"), "x"), { rule: "acme.domain" });
  assert.throws(() => username.decide(ctx, config, JSON.stringify({ userName: "x" }), "x"), { rule: "acme.email" });
});

test("groups map by name, others are not synced; everyone gets the defaults", () => {
  assert.deepEqual(groups.mapGroup(ctx, config, { id: "g", displayName: "Dev users" }, ["Dev users"]).groups, ["software_dev"]);
  assert.deepEqual(groups.mapGroup(ctx, config, { id: "g", displayName: "Marketing" }, ["Marketing"]).groups, []);
  // After another entry: the names it proposed are mapped, not the IdP's.
  assert.deepEqual(groups.mapGroup(ctx, config, { id: "g", displayName: "dev" }, ["Dev users", "x"]).groups, ["software_dev"]);
  const m = groups.userMemberships(ctx, config, user("a@acme.com"), true, { add: ["x"], remove: ["app-users"] });
  assert.deepEqual(m, { add: ["x", "app-users"], remove: [] });
});

test("a bad configuration is refused when the chain is loaded", () => {
  assert.throws(() => meta.validateConfig(JSON.stringify({ domain: "acme.com" })), /unknown keys: domain/);
  assert.throws(() => parseConfig(JSON.stringify({ domains: [1] })), /domains/);
  assert.throws(() => parseConfig(JSON.stringify({ defaults: "app-users" })), /defaults/);
  assert.deepEqual(meta.describe().hooks, ["username", "groups"]);
});
