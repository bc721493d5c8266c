// Checks ogkit receipts with OpenZeppelin's own StandardMerkleTree.verify, and the
// claim signature with ethers' EIP-712 verifyTypedData: no ogkit code involved.
import { readFileSync } from "node:fs";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { verifyTypedData, getAddress } from "ethers";

const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
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
  return [v.batchId, v.modelId, v.runtimeId, v.rowIndex, v.inputHash, v.outputHash];
}

function check(r) {
  if (!StandardMerkleTree.verify(r.batch_root, doc.types, leafValues(r), r.proof)) return false;
  const c = r.claim;
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
