#!/usr/bin/env node
// Compile one EZKL-generated Solidity verifier with the repository's pinned solc-js (never a
// compiler download). Reads {"source": "...", "contract": "Halo2Verifier", "runs": 1} as
// JSON on stdin, writes {"abi", "bytecode", "deployedBytecode", "compiler", "settings"} to
// stdout. Same evmVersion as ogkit/chain/compile.mjs; optimizer runs default 1 (smallest
// code: the verifier runs once per call).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..", "..");
const require = createRequire(join(repoRoot, "package.json"));

function main() {
  const request = JSON.parse(readFileSync(0, "utf8"));
  const solc = require("solc");
  const settings = {
    optimizer: { enabled: true, runs: request.runs ?? 1 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  };
  const input = { language: "Solidity", sources: { "Verifier.sol": { content: request.source } }, settings };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  if (errors.length > 0) {
    process.stderr.write(errors.map((e) => e.formattedMessage).join("\n"));
    process.exit(1);
  }
  const name = request.contract ?? "Halo2Verifier";
  const c = output.contracts?.["Verifier.sol"]?.[name];
  if (!c) {
    process.stderr.write(`no contract ${name} in the source`);
    process.exit(1);
  }
  process.stdout.write(
    JSON.stringify({
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
      compiler: solc.version(),
      settings: { evmVersion: settings.evmVersion, optimizer: settings.optimizer },
    }),
  );
}

try {
  main();
} catch (err) {
  process.stderr.write(`${err.message}\n`);
  process.exit(2);
}
