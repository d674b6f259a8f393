// Uploads local files to the emulator for the benchmark: node upload.js CONTAINER PREFIX PATH...
// A directory's files are uploaded under PREFIX/<dir name>/<file>, 64 at a time; a file is
// uploaded as PREFIX/<file name> in 8 MB blocks. Uses the emulator's development account.
const fs = require("fs");
const path = require("path");
const { BlobServiceClient } = require("@azure/storage-blob");
const conn = process.env.AZURITE_CONNECTION_STRING;
if (!conn) { console.error("AZURITE_CONNECTION_STRING is not set"); process.exit(2); }
const [container, prefix, ...paths] = process.argv.slice(2);
(async () => {
  const c = BlobServiceClient.fromConnectionString(conn).getContainerClient(container);
  await c.createIfNotExists();
  const jobs = [];
  for (const p of paths) {
    if (fs.statSync(p).isDirectory()) {
      for (const f of fs.readdirSync(p)) jobs.push([path.join(p, f), `${prefix}/${path.basename(p)}/${f}`]);
    } else {
      jobs.push([p, `${prefix}/${path.basename(p)}`]);
    }
  }
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const [file, name] = jobs[next++];
      await c.getBlockBlobClient(name).uploadFile(file, { blockSize: 8 * 1024 * 1024, concurrency: 4 });
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  console.error(`uploaded ${jobs.length} blobs to ${container}/${prefix}`);
})().catch((e) => { console.error(`upload failed: ${e.message}`); process.exit(1); });
