#!/usr/bin/env node
// Compile ogkit's Solidity contracts with the pinned solc-js (offline, no download) and write
// one deterministic artefact per deployable contract to ogkit/chain/artifacts/<Contract>.json.
//
//   node ogkit/chain/compile.mjs           compile and write the artefacts
//   node ogkit/chain/compile.mjs --check   compile in memory; exit 1 listing every artefact
//                                          that differs from (or is missing next to) the
//                                          committed one
//
// Standard JSON input, optimizer on (runs = 100: InferenceSettlement stays under the 24,576-byte code limit), evmVersion "cancun". Imports starting with
// "@openzeppelin/" are resolved from the repository's node_modules.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..", "..");
const contractsDir = join(here, "contracts");
const artifactsDir = join(here, "artifacts");
const nodeModules = join(repoRoot, "node_modules");
const require = createRequire(join(repoRoot, "package.json"));

const SETTINGS = {
  optimizer: { enabled: true, runs: 100 },
  evmVersion: "cancun",
  outputSelection: {
    "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"] },
  },
};

/** Source unit name (repo-relative, forward slashes) for a file under the repository. */
function unitName(path) {
  return relative(repoRoot, path).split("\\").join("/");
}

/** JSON with object keys sorted at every level, two-space indent, trailing newline. */
function stableStringify(value) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sort(v[k])]),
      );
    }
    return v;
  };
  return `${JSON.stringify(sort(value), null, 2)}\n`;
}

function sha256(text) {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

function compileAll() {
  let solc;
  try {
    solc = require("solc");
  } catch (err) {
    throw new Error(`solc-js is not installed in ${nodeModules} (run npm ci): ${err.message}`);
  }
  const files = readdirSync(contractsDir)
    .filter((f) => f.endsWith(".sol"))
    .sort();
  if (files.length === 0) throw new Error(`no .sol files in ${contractsDir}`);

  // Every source text the compiler saw, by unit name, for the per-contract source hash.
  const seen = new Map();
  const sources = {};
  for (const f of files) {
    const name = unitName(join(contractsDir, f));
    const content = readFileSync(join(contractsDir, f), "utf8");
    sources[name] = { content };
    seen.set(name, content);
  }

  const findImports = (path) => {
    if (path.startsWith("@openzeppelin/")) {
      const full = join(nodeModules, path);
      if (!existsSync(full)) return { error: `not found in node_modules: ${path}` };
      const content = readFileSync(full, "utf8");
      seen.set(path, content);
      return { contents: content };
    }
    const full = join(repoRoot, path);
    if (path.startsWith("ogkit/chain/contracts/") && existsSync(full)) {
      const content = readFileSync(full, "utf8");
      seen.set(path, content);
      return { contents: content };
    }
    return { error: `cannot resolve import ${path}` };
  };

  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const problems = output.errors ?? [];
  for (const p of problems) {
    if (p.severity !== "error") process.stderr.write(`${p.formattedMessage}\n`);
  }
  const errors = problems.filter((p) => p.severity === "error");
  if (errors.length > 0) {
    throw new Error(`solc failed:\n${errors.map((e) => e.formattedMessage).join("\n")}`);
  }

  const version = solc.version();
  const artifacts = new Map();
  for (const name of Object.keys(output.contracts).sort()) {
    if (!name.startsWith("ogkit/chain/contracts/")) continue;
    for (const contractName of Object.keys(output.contracts[name]).sort()) {
      const c = output.contracts[name][contractName];
      if (!c.evm.bytecode.object) continue; // interfaces, abstract contracts, libraries
      const meta = JSON.parse(c.metadata);
      const used = Object.keys(meta.sources).sort();
      const hash = createHash("sha256");
      for (const u of used) {
        if (!seen.has(u)) throw new Error(`source ${u} of ${contractName} was not recorded`);
        hash.update(`${u}\n${sha256(seen.get(u))}\n`, "utf8");
      }
      if (artifacts.has(contractName)) throw new Error(`duplicate contract name ${contractName}`);
      artifacts.set(contractName, {
        abi: c.abi,
        bytecode: `0x${c.evm.bytecode.object}`,
        compiler: version,
        contractName,
        deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
        settings: { evmVersion: SETTINGS.evmVersion, optimizer: SETTINGS.optimizer },
        sourceHash: hash.digest("hex"),
        sourceName: name,
        sources: used,
      });
    }
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes("--check");
  const artifacts = compileAll();
  const expected = new Map(
    [...artifacts].map(([name, art]) => [`${name}.json`, stableStringify(art)]),
  );
  if (check) {
    const differ = [];
    for (const [file, text] of expected) {
      const path = join(artifactsDir, file);
      if (!existsSync(path)) differ.push(`${file} (missing)`);
      else if (readFileSync(path, "utf8") !== text) differ.push(`${file} (differs)`);
    }
    if (existsSync(artifactsDir)) {
      for (const file of readdirSync(artifactsDir).sort()) {
        if (file.endsWith(".json") && !expected.has(file)) differ.push(`${file} (stale)`);
      }
    }
    if (differ.length > 0) {
      process.stderr.write(
        `artefacts out of date; run: node ogkit/chain/compile.mjs\n${differ
          .map((d) => `  ${d}`)
          .join("\n")}\n`,
      );
      process.exit(1);
    }
    process.stdout.write(`${expected.size} artefacts up to date\n`);
    return;
  }
  mkdirSync(artifactsDir, { recursive: true });
  for (const [file, text] of expected) writeFileSync(join(artifactsDir, file), text);
  process.stdout.write(`wrote ${[...expected.keys()].join(", ")} to ${unitName(artifactsDir)}\n`);
}

try {
  main();
} catch (err) {
  process.stderr.write(`${err.message}\n`);
  process.exit(2);
}
