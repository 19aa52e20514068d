// Builds plugin.js into a WebAssembly component against Mapwright's contract (the WIT in
// `wit/`, world `host-rules`): `npm run build` writes `acme-rules.wasm`, or the path
// given as the first argument.
import { componentize } from "@bytecodealliance/componentize-js";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, "acme-rules.wasm"));
const { component } = await componentize(await readFile(resolve(here, "plugin.js"), "utf8"), {
  witPath: resolve(here, "wit"),
  worldName: "host-rules",
  // The sandbox grants no clock, randomness, stdio or network: the rules do not ask for them.
  disableFeatures: ["random", "clocks", "stdio", "http", "fetch-event"],
});
await writeFile(out, component);
console.log(`${out}: ${(component.length / 1048576).toFixed(1)} MiB`);
