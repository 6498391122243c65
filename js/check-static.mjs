// Fail when the package's copy of the front end differs from js/ (run js/sync-static.mjs).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "soniox_widget", "static");
let stale = [];
for (const name of ["widget.js", "widget.css"]) {
  let copy = null;
  try {
    copy = readFileSync(join(target, name), "utf8");
  } catch {}
  if (copy !== readFileSync(join(here, name), "utf8")) stale.push(name);
}
if (stale.length) {
  console.error(`soniox_widget/static/ is out of date (${stale.join(", ")}): run node js/sync-static.mjs`);
  process.exit(1);
}
console.log("soniox_widget/static/ matches js/");
