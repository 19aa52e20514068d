// A Mapwright rule plugin in JavaScript. Each export implements one interface of the contract
// (plugin-sdk/wit/plugin.wit, world `host-rules`); the host calls only the hooks `describe`
// lists, and the others pass their input through.
//
// The rules here: the username is the primary email's local part, lower-cased, from one of
// the configured domains (others are refused); a group name listed in `groups` becomes that
// application group, any other is not synced; everyone gets the `defaults` groups. Group
// names are the ones the previous chain entry proposed (the IdP group's name when this entry
// comes first), so the plugin composes with the entries before it.
//
// Configuration (JSON, the chain entry's `config`):
//   { "domains": ["acme.com"], "groups": { "Dev users": "software_dev" }, "defaults": ["app-users"] }

/** Parses and checks a configuration; throws a string saying what is wrong. */
export function parseConfig(text) {
  const c = JSON.parse(text || "null") ?? {};
  if (typeof c !== "object" || Array.isArray(c)) throw "the configuration must be an object";
  const unknown = Object.keys(c).filter((k) => !["domains", "groups", "defaults"].includes(k));
  if (unknown.length) throw `unknown keys: ${unknown.join(", ")}`;
  if (!Array.isArray(c.domains ?? []) || (c.domains ?? []).some((d) => typeof d !== "string")) throw "domains: a list of domains";
  if (typeof (c.groups ?? {}) !== "object" || Object.values(c.groups ?? {}).some((g) => typeof g !== "string")) throw "groups: IdP group name → application group name";
  if (!Array.isArray(c.defaults ?? []) || (c.defaults ?? []).some((g) => typeof g !== "string")) throw "defaults: a list of application group names";
  return { domains: (c.domains ?? []).map((d) => d.toLowerCase()), groups: c.groups ?? {}, defaults: c.defaults ?? [] };
}

/** A refusal: the IdP's request fails with 400 and this reason. */
function reject(rule, reason) {
  // componentize-js turns a thrown value into the `err` of the export's result.
  throw { rule, reason };
}

function primaryEmail(user) {
  const emails = user.emails ?? [];
  return (emails.find((e) => e.primary) ?? emails[0])?.value;
}

export const meta = {
  describe() {
    return { name: "acme-rules-js", version: "0.1.0", hooks: ["username", "groups"] };
  },
  validateConfig(config) {
    parseConfig(config);
  },
};

export const username = {
  decide(ctx, config, user, proposed, current) {
    const c = parseConfig(config);
    const email = primaryEmail(JSON.parse(user));
    if (!email) reject("acme.email", "the user has no email address");
    const [local, domain = ""] = email.split("@");
    if (c.domains.length && !c.domains.includes(domain.toLowerCase())) reject("acme.domain", `${domain} is not an Acme domain`);
    const name = local.toLowerCase();
    return { userName: name, provenance: { rule: "acme.local-part", reason: `${proposed} → ${name}` } };
  },
};

export const groups = {
  mapGroup(ctx, config, group, proposed) {
    const c = parseConfig(config);
    const to = proposed.filter((n) => Object.hasOwn(c.groups, n)).map((n) => c.groups[n]);
    const reason = to.length ? `${proposed.join(", ")} → ${to.join(", ")}` : `'${group.displayName}' is not synced`;
    return { groups: [...new Set(to)], provenance: { rule: "acme.groups", reason } };
  },
  userMemberships(ctx, config, user, isNew, proposed) {
    const c = parseConfig(config);
    const add = [...new Set([...proposed.add, ...c.defaults])];
    return { add, remove: proposed.remove.filter((g) => !c.defaults.includes(g)) };
  },
};

// The hooks this plugin does not list: never called, but the contract has them.
export const attributes = {
  mapAttributes(ctx, config, user, proposed, current) {
    return { attributes: proposed };
  },
};

export const deprovision = {
  onDeprovision(ctx, config, user, trigger, proposed) {
    return { action: proposed };
  },
  onReactivate(ctx, config, user, proposed) {
    return { restore: proposed };
  },
};
