// Creates blob containers in the emulator (object_store cannot): node containers.js NAME...
// Uses the emulator's well-known development account, never a real one.
const { BlobServiceClient } = require("@azure/storage-blob");
const conn = process.env.AZURITE_CONNECTION_STRING ||
  "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
  "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
  "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";
(async () => {
  const svc = BlobServiceClient.fromConnectionString(conn);
  for (const name of process.argv.slice(2)) {
    await svc.getContainerClient(name).createIfNotExists();
  }
})().catch((e) => { console.error(`creating containers failed: ${e.message}`); process.exit(1); });
