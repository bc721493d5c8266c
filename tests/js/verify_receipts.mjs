// Checks ogkit receipts with OpenZeppelin's own SimpleMerkleTree.verify over the leaf that
// ethers' AbiCoder and keccak256 compute (docs/spec.md §3.1, §8), and the claim signature
// with ethers' EIP-712 verifyTypedData: no ogkit code involved.
import { readFileSync } from "node:fs";
import { SimpleMerkleTree } from "@openzeppelin/merkle-tree";
import { AbiCoder, getAddress, keccak256, verifyTypedData } from "ethers";

const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
// The leaf encoding the spec fixes (§3.1); the document's types must be these.
const LEAF_TYPES = ["uint256", "bytes32", "bytes32"];
if (JSON.stringify(doc.types) !== JSON.stringify(LEAF_TYPES)) {
  console.error(`leaf types differ: ${JSON.stringify(doc.types)} vs the spec's ${JSON.stringify(LEAF_TYPES)}`);
  process.exit(2);
}
const CLAIM_TYPES = {
  BatchClaim: [
    { name: "batchId", type: "bytes32" },
    { name: "modelId", type: "bytes32" },
    { name: "runtimeId", type: "bytes32" },
    { name: "batchRoot", type: "bytes32" },
    { name: "rowCount", type: "uint64" },
    { name: "requester", type: "address" },
    { name: "timestamp", type: "uint64" },
    { name: "attester", type: "address" },
  ],
};

function leafValues(r) {
  const v = r.leaf_values;
  // Exactly the leaf's values: a field the leaf does not hash would be believed by readers.
  if (JSON.stringify(Object.keys(v).sort()) !== JSON.stringify(["inputHash", "outputHash", "rowIndex"])) {
    throw new Error("leaf_values must hold exactly rowIndex, inputHash, outputHash");
  }
  return [v.rowIndex, v.inputHash, v.outputHash];
}

// What OpenZeppelin's ECDSA.recover accepts: 65 bytes, low s, v in {27, 28} (docs/spec.md §5).
const HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;
function canonicalSignature(sig) {
  if (typeof sig !== "string" || !/^0x[0-9a-fA-F]{130}$/.test(sig)) return false;
  const s = BigInt("0x" + sig.slice(66, 130));
  const v = parseInt(sig.slice(130, 132), 16);
  return s > 0n && s <= HALF_N && (v === 27 || v === 28);
}

function check(r) {
  if (r.schema !== "ogkit.receipt.v2") return false;
  const c = r.claim;
  const v = r.leaf_values;
  // Step 1: the receipt's leaf is keccak256 of the abi encoding of its values (one hash).
  const leaf = keccak256(AbiCoder.defaultAbiCoder().encode(LEAF_TYPES, leafValues(r)));
  if (leaf !== String(r.leaf).toLowerCase()) return false;
  // Step 2: the proof leads from that leaf to the root the claim signs.
  if (!SimpleMerkleTree.verify(c.batch_root, leaf, r.proof)) return false;
  // Step 3: the row is inside the batch (the ids are the claim's alone: the leaf has none).
  if (!(BigInt(v.rowIndex) < BigInt(c.row_count))) return false;
  if (!canonicalSignature(r.signature)) return false;
  // Step 5, when the document carries the verifier's allowlist (ogkit.allowlist.v2): the
  // claim's own (attester, runtime id) pair must be approved.
  if (doc.allowlist) {
    const approved = doc.allowlist.approvals.some(
      (p) =>
        p.attester.toLowerCase() === c.attester.toLowerCase() &&
        p.measurement.toLowerCase() === c.runtime_id.toLowerCase(),
    );
    if (!approved) return false;
  }
  const domain = {
    name: "ogkit",
    version: "1",
    chainId: r.domain.chain_id,
    verifyingContract: getAddress(r.domain.verifying_contract),
  };
  const message = {
    batchId: c.batch_id, modelId: c.model_id, runtimeId: c.runtime_id, batchRoot: c.batch_root,
    rowCount: c.row_count, requester: c.requester, timestamp: c.timestamp, attester: c.attester,
  };
  const signer = verifyTypedData(domain, CLAIM_TYPES, message, r.signature);
  return signer === getAddress(c.attester) && c.batch_root === r.batch_root;
}

const good = doc.good.filter(check).length;
const rejected = doc.bad.filter((r) => !check(r)).length;
if (good !== doc.good.length || rejected !== doc.bad.length) {
  console.error(`mismatch: ${good}/${doc.good.length} good verified, ${rejected}/${doc.bad.length} bad rejected`);
  process.exit(1);
}
console.log(`${good} good receipts verified, ${rejected} bad receipt rejected`);
