// Copy the front-end sources into the Python package (soniox_widget/static/).
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "soniox_widget", "static");
export const FILES = ["widget.js", "widget.css"];

mkdirSync(target, { recursive: true });
for (const name of FILES) copyFileSync(join(here, name), join(target, name));
console.log(`copied ${FILES.join(", ")} to soniox_widget/static/`);
