/**
 * Complete package-lock.json with the platform builds of @rspack/binding (the
 * compiler of @jupyter/builder) that the npm registry mirror of this project's
 * machines does not serve: without an entry for each optional dependency,
 * `npm ci` refuses the lock file ("Missing: @rspack/binding-darwin-arm64 from
 * lock file"). The entries carry only os/cpu/libc, so `npm ci` skips them on
 * other platforms and a registry that has them fills them in.
 *
 * Run after `npm install` changes the lock file: `npm run lock:complete`.
 */
import fs from 'node:fs';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(fs.readFileSync(file, 'utf8'));
const packages = lock.packages;

/** `@rspack/binding-linux-x64-gnu` -> os, cpu and libc of the build. */
function platformOf(name) {
  const [os, cpu, abi] = name.replace(/^.*binding-/, '').split('-');
  const entry = {};
  if (os !== 'wasm32') {
    entry.os = [os];
  }
  entry.cpu = [os === 'wasm32' ? 'wasm32' : cpu];
  if (abi === 'gnu' || abi === 'musl') {
    entry.libc = [abi === 'gnu' ? 'glibc' : 'musl'];
  }
  return entry;
}

let added = 0;
for (const [key, entry] of Object.entries(packages)) {
  if (!key.endsWith('node_modules/@rspack/binding')) {
    continue;
  }
  for (const [name, version] of Object.entries(
    entry.optionalDependencies ?? {}
  )) {
    const path = key.replace(/@rspack\/binding$/, name);
    if (!packages[path]) {
      packages[path] = {
        version,
        dev: entry.dev,
        license: entry.license,
        optional: true,
        ...platformOf(name)
      };
      added += 1;
    }
  }
}
lock.packages = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) =>
    a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0
  )
);
fs.writeFileSync(file, JSON.stringify(lock, null, 2) + '\n');
console.log(`package-lock.json: ${added} platform entries added`);
