// Cross-check ogkit's Python Merkle trees against @openzeppelin/merkle-tree.
//
// Usage: node tests/js/check_merkle.mjs CASE.json
// CASE.json is written by tests/test_merkle.py:
//   {
//     "types": [...],                                    // ogkit's LEAF_TYPES
//     "single": { "values": [[...6 values...], ...],     // hex strings, rowIndex decimal
//                 "root": "0x..", "proofs": [["0x..", ...], ...] },
//     "multi":  { "batch_root": "0x..",
//                 "partitions": [{ "values": [...], "root": "0x..",
//                                  "proofs": [[...composed proof...], ...] }, ...] }
//   }
// Exits 0 when every check passes; otherwise prints what failed and exits 1.

import { readFileSync } from "node:fs";
import { SimpleMerkleTree, StandardMerkleTree } from "@openzeppelin/merkle-tree";

// The leaf encoding the spec fixes; the Python side must agree with it, not define it.
const LEAF_TYPES = ["bytes32", "bytes32", "bytes32", "uint256", "bytes32", "bytes32"];

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

// Single partition: same root, same proofs, every proof verifies, altered ones do not.
{
  const { values, root, proofs } = data.single;
  const tree = StandardMerkleTree.of(values, LEAF_TYPES);
  check(tree.root === root, `single: root mismatch: js ${tree.root} vs python ${root}`);
  values.forEach((value, i) => {
    const proof = proofs[i];
    check(
      JSON.stringify(tree.getProof(i)) === JSON.stringify(proof),
      `single: proof ${i} differs from the JS library's getProof(${i})`,
    );
    check(
      StandardMerkleTree.verify(root, LEAF_TYPES, value, proof),
      `single: proof ${i} does not verify`,
    );
    if (proof.length > 0) {
      const bad = [...proof];
      bad[i % bad.length] = alter(bad[i % bad.length]);
      check(
        !StandardMerkleTree.verify(root, LEAF_TYPES, value, bad),
        `single: altered proof ${i} still verifies`,
      );
    }
    const otherRow = [...value];
    otherRow[3] = (BigInt(value[3]) + 1n).toString();
    check(
      !StandardMerkleTree.verify(root, LEAF_TYPES, otherRow, proof),
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
    const tree = StandardMerkleTree.of(part.values, LEAF_TYPES);
    check(tree.root === part.root, `multi: partition ${p} root mismatch`);
    part.values.forEach((value, i) => {
      const proof = part.proofs[i];
      check(
        StandardMerkleTree.verify(batchRoot, LEAF_TYPES, value, proof),
        `multi: composed proof ${p}/${i} does not verify against the batch root`,
      );
      if (proof.length > 0) {
        const bad = [...proof];
        bad[bad.length - 1] = alter(bad[bad.length - 1]);
        check(
          !StandardMerkleTree.verify(batchRoot, LEAF_TYPES, value, bad),
          `multi: altered composed proof ${p}/${i} still verifies`,
        );
      }
    });
  });
}

// The dataset commitment (input root): a standard tree over (uint256 rowIndex, bytes32 inputHash).
if (data.inputs) {
  const tree = StandardMerkleTree.of(data.inputs.values, ["uint256", "bytes32"]);
  check(tree.root === data.inputs.root, `input root mismatch: ${tree.root} vs ${data.inputs.root}`);
}

if (failures.length > 0) {
  console.error(`${failures.length} check(s) failed:\n  ${failures.slice(0, 20).join("\n  ")}`);
  process.exit(1);
}
console.log("ok: OpenZeppelin StandardMerkleTree agrees with ogkit");
