// Cross-check ogkit's Python leaves and Merkle trees against ethers and
// @openzeppelin/merkle-tree, computing every leaf here from its values (docs/spec.md §3, §4.1).
//
// Usage: node tests/js/check_merkle.mjs CASE.json
// CASE.json is written by tests/test_merkle.py:
//   {
//     "types": [...],                                    // ogkit's LEAF_TYPES
//     "single": { "values": [[rowIndex, inputHash, outputHash], ...],  // rowIndex decimal
//                 "root": "0x..", "proofs": [["0x..", ...], ...] },
//     "multi":  { "batch_root": "0x..",
//                 "partitions": [{ "values": [...], "root": "0x..",
//                                  "proofs": [[...composed proof...], ...] }, ...] },
//     "inputs": { "values": [[rowIndex, inputHash], ...], "root": "0x.." },
//     "vectors": { "leaf": "0x..", "input_leaf": "0x..", "input_leaf_tag": "0x..",
//                  "three_row_root": "0x..", "three_row_input_root": "0x.." }
//   }
// Exits 0 when every check passes; otherwise prints what failed and exits 1.

import { readFileSync } from "node:fs";
import { SimpleMerkleTree } from "@openzeppelin/merkle-tree";
import { AbiCoder, keccak256, toUtf8Bytes } from "ethers";

// The leaf encodings the spec fixes; the Python side must agree with them, not define them.
const LEAF_TYPES = ["uint256", "bytes32", "bytes32"];
const INPUT_LEAF_TYPES = ["bytes32", "uint256", "bytes32"];
const INPUT_LEAF_TAG = keccak256(toUtf8Bytes("ogkit.input-leaf.v1"));
const abi = AbiCoder.defaultAbiCoder();

// One hash of the 96-byte abi encoding: no double hash (spec §3.1).
const rowLeaf = (value) => keccak256(abi.encode(LEAF_TYPES, value));
const inputLeaf = ([row, inputHash]) =>
  keccak256(abi.encode(INPUT_LEAF_TYPES, [INPUT_LEAF_TAG, row, inputHash]));

const failures = [];
const check = (ok, message) => {
  if (!ok) failures.push(message);
};

// Flip the last byte of a 0x-prefixed 32-byte hex string.
const alter = (hex) => {
  const last = parseInt(hex.slice(-2), 16) ^ 0x01;
  return hex.slice(0, -2) + last.toString(16).padStart(2, "0");
};

const data = JSON.parse(readFileSync(process.argv[2], "utf8"));
check(
  JSON.stringify(data.types) === JSON.stringify(LEAF_TYPES),
  `leaf types differ: python ${JSON.stringify(data.types)} vs spec ${JSON.stringify(LEAF_TYPES)}`,
);
check(
  abi.encode(LEAF_TYPES, ["7", "0x" + "04".repeat(32), "0x" + "05".repeat(32)]).length === 2 + 2 * 96,
  "a row leaf's message is not 96 bytes",
);

// Single partition: same root, same proofs, every proof verifies, altered ones do not.
{
  const { values, root, proofs } = data.single;
  const leaves = values.map(rowLeaf);
  const tree = SimpleMerkleTree.of(leaves);
  check(tree.root === root, `single: root mismatch: js ${tree.root} vs python ${root}`);
  values.forEach((value, i) => {
    const proof = proofs[i];
    check(
      JSON.stringify(tree.getProof(i)) === JSON.stringify(proof),
      `single: proof ${i} differs from the JS library's getProof(${i})`,
    );
    check(SimpleMerkleTree.verify(root, leaves[i], proof), `single: proof ${i} does not verify`);
    if (proof.length > 0) {
      const bad = [...proof];
      bad[i % bad.length] = alter(bad[i % bad.length]);
      check(
        !SimpleMerkleTree.verify(root, leaves[i], bad),
        `single: altered proof ${i} still verifies`,
      );
    }
    const otherRow = [...value];
    otherRow[0] = (BigInt(value[0]) + 1n).toString();
    check(
      !SimpleMerkleTree.verify(root, rowLeaf(otherRow), proof),
      `single: proof ${i} verifies a different rowIndex`,
    );
  });
}

// Several partitions: partition roots match, the batch tree over the raw partition roots
// matches SimpleMerkleTree, and every composed proof verifies against the batch root.
{
  const { batch_root: batchRoot, partitions } = data.multi;
  const roots = partitions.map((p) => p.root);
  const batchTree = SimpleMerkleTree.of(roots);
  check(
    batchTree.root === batchRoot,
    `multi: batch root mismatch: js ${batchTree.root} vs python ${batchRoot}`,
  );
  partitions.forEach((part, p) => {
    const leaves = part.values.map(rowLeaf);
    const tree = SimpleMerkleTree.of(leaves);
    check(tree.root === part.root, `multi: partition ${p} root mismatch`);
    leaves.forEach((leaf, i) => {
      const proof = part.proofs[i];
      check(
        SimpleMerkleTree.verify(batchRoot, leaf, proof),
        `multi: composed proof ${p}/${i} does not verify against the batch root`,
      );
      if (proof.length > 0) {
        const bad = [...proof];
        bad[bad.length - 1] = alter(bad[bad.length - 1]);
        check(
          !SimpleMerkleTree.verify(batchRoot, leaf, bad),
          `multi: altered composed proof ${p}/${i} still verifies`,
        );
      }
    });
  });
}

// The dataset commitment (input root): tagged leaves (INPUT_LEAF_TAG, rowIndex, inputHash).
if (data.inputs) {
  const tree = SimpleMerkleTree.of(data.inputs.values.map(inputLeaf));
  check(tree.root === data.inputs.root, `input root mismatch: ${tree.root} vs ${data.inputs.root}`);
}

// The spec's test vectors.
if (data.vectors) {
  const v = data.vectors;
  const b = (k) => "0x" + k.toString(16).padStart(2, "0").repeat(32);
  check(rowLeaf(["7", b(4), b(5)]) === v.leaf, `vector: leaf ${rowLeaf(["7", b(4), b(5)])}`);
  check(inputLeaf(["7", b(4)]) === v.input_leaf, `vector: input leaf ${inputLeaf(["7", b(4)])}`);
  check(INPUT_LEAF_TAG === v.input_leaf_tag, `vector: input leaf tag ${INPUT_LEAF_TAG}`);
  const rows = [0, 1, 2].map((i) => [String(i), b(4 + i), b(5 + i)]);
  const three = SimpleMerkleTree.of(rows.map(rowLeaf)).root;
  check(three === v.three_row_root, `vector: three-row root ${three}`);
  const threeIn = SimpleMerkleTree.of(rows.map(([i, x]) => inputLeaf([i, x]))).root;
  check(threeIn === v.three_row_input_root, `vector: three-row input root ${threeIn}`);
}

if (failures.length > 0) {
  console.error(`${failures.length} check(s) failed:\n  ${failures.slice(0, 20).join("\n  ")}`);
  process.exit(1);
}
console.log("ok: ethers + OpenZeppelin SimpleMerkleTree agree with ogkit");
