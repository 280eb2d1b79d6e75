// Run a Python file under real MicroPython (WebAssembly port) with the portable core
// copied into its filesystem. Usage: node run.mjs REPO_ROOT SCRIPT.py
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const [root, script] = process.argv.slice(2);
let failed = false;
const mp = await loadMicroPython({
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => { failed = true; process.stderr.write(line + "\n"); },
});
// The same package path as the installed distribution: synthseal.device.core.
mp.FS.mkdirTree("/lib/synthseal/device/core");
mp.FS.writeFile("/lib/synthseal/__init__.py", "");
mp.FS.writeFile("/lib/synthseal/device/__init__.py", "");
for (const name of readdirSync(join(root, "device", "core"))) {
  if (name.endsWith(".py")) {
    mp.FS.writeFile("/lib/synthseal/device/core/" + name, readFileSync(join(root, "device", "core", name)));
  }
}
try {
  mp.runPython(readFileSync(script, "utf8"));
} catch (err) {
  process.stderr.write(String(err) + "\n");
  process.exit(1);
}
process.exit(failed ? 1 : 0);
