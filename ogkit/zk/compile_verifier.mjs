#!/usr/bin/env node
// Compile Solidity verifiers with the repository's pinned solc-js (never a compiler download).
//
//   node ogkit/zk/compile_verifier.mjs            one source from stdin (below)
//   node ogkit/zk/compile_verifier.mjs --write    ogkit/zk/contracts/*.sol -> ogkit/zk/artifacts/
//   node ogkit/zk/compile_verifier.mjs --check    exit 1 if a committed artefact differs
//
// Stdin mode reads {"source": "...", "contract": "Halo2Verifier", "runs": 1, "file":
// "Verifier.sol"} as JSON and writes {"abi", "bytecode", "deployedBytecode", "compiler",
// "settings"} to stdout: for the EZKL-generated verifiers (optimizer runs default 1, the
// smallest code: a verifier runs once per call). The --write/--check mode builds ogkit's own
// ZK contracts (the ZkVkVerifier adapter), optimizer runs 200, one artefact per contract,
// JSON with sorted keys. Same evmVersion as ogkit/chain/compile.mjs.
import { readFileSync, readdirSync, writeFileSync, existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..", "..");
const require = createRequire(join(repoRoot, "package.json"));
const CONTRACTS_RUNS = 200;

function compile(file, source, runs) {
  const solc = require("solc");
  const settings = {
    optimizer: { enabled: true, runs },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  };
  const input = { language: "Solidity", sources: { [file]: { content: source } }, settings };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  if (errors.length > 0) {
    process.stderr.write(errors.map((e) => e.formattedMessage).join("\n"));
    process.exit(1);
  }
  return { contracts: output.contracts?.[file] ?? {}, settings, version: solc.version() };
}

function artefact(c, settings, version) {
  return {
    abi: c.abi,
    bytecode: `0x${c.evm.bytecode.object}`,
    deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
    compiler: version,
    settings: { evmVersion: settings.evmVersion, optimizer: settings.optimizer },
  };
}

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

function ownContracts(check) {
  const dir = join(here, "contracts");
  const out = join(here, "artifacts");
  const differ = [];
  const written = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith(".sol")).sort()) {
    const { contracts, settings, version } = compile(f, readFileSync(join(dir, f), "utf8"), CONTRACTS_RUNS);
    for (const name of Object.keys(contracts).sort()) {
      const c = contracts[name];
      if (!c.evm.bytecode.object) continue; // interfaces
      const text = stableStringify({ ...artefact(c, settings, version), contractName: name, sourceName: f });
      const path = join(out, `${name}.json`);
      if (check) {
        if (!existsSync(path) || readFileSync(path, "utf8") !== text) differ.push(name);
      } else {
        mkdirSync(out, { recursive: true });
        writeFileSync(path, text);
        written.push(name);
      }
    }
  }
  if (check && differ.length > 0) {
    process.stderr.write(`out of date: ${differ.join(", ")}; run: node ogkit/zk/compile_verifier.mjs --write\n`);
    process.exit(1);
  }
  process.stdout.write(check ? "ZK contract artefacts up to date\n" : `wrote ${written.join(", ")}\n`);
}

function fromStdin() {
  const request = JSON.parse(readFileSync(0, "utf8"));
  const file = request.file ?? "Verifier.sol";
  const { contracts, settings, version } = compile(file, request.source, request.runs ?? 1);
  const name = request.contract ?? "Halo2Verifier";
  const c = contracts[name];
  if (!c) {
    process.stderr.write(`no contract ${name} in the source`);
    process.exit(1);
  }
  process.stdout.write(JSON.stringify(artefact(c, settings, version)));
}

try {
  if (process.argv.includes("--write")) ownContracts(false);
  else if (process.argv.includes("--check")) ownContracts(true);
  else fromStdin();
} catch (err) {
  process.stderr.write(`${err.message}\n`);
  process.exit(2);
}
