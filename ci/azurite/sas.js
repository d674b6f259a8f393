// Prints a SAS token (query string, no leading '?') for the emulator's development account,
// made by Azure's own SDK so the tests check our SAS handling against an independent signer:
//   node sas.js container NAME [PERMS]     container SAS (sr=c), default perms "racwdl"
//   node sas.js blob CONTAINER BLOB        blob SAS (sr=b), read only
//   node sas.js account [PERMS]            account SAS (ss=b, srt=sco), default "racwdl"
// The key is the emulator's published development key, never a real one.
const sdk = require("@azure/storage-blob");
const account = "devstoreaccount1";
const key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const cred = new sdk.StorageSharedKeyCredential(account, key);
const startsOn = new Date(Date.now() - 5 * 60 * 1000);
const expiresOn = new Date(Date.now() + 2 * 60 * 60 * 1000);
const [kind, a, b] = process.argv.slice(2);
let sas;
if (kind === "container") {
  sas = sdk.generateBlobSASQueryParameters({
    containerName: a, permissions: sdk.ContainerSASPermissions.parse(b || "racwdl"),
    startsOn, expiresOn, protocol: sdk.SASProtocol.HttpsAndHttp,
  }, cred);
} else if (kind === "blob") {
  sas = sdk.generateBlobSASQueryParameters({
    containerName: a, blobName: b, permissions: sdk.BlobSASPermissions.parse("r"),
    startsOn, expiresOn, protocol: sdk.SASProtocol.HttpsAndHttp,
  }, cred);
} else if (kind === "account") {
  sas = sdk.generateAccountSASQueryParameters({
    services: "b", resourceTypes: "sco", permissions: sdk.AccountSASPermissions.parse(a || "racwdl"),
    startsOn, expiresOn, protocol: sdk.SASProtocol.HttpsAndHttp,
  }, cred);
} else {
  console.error("usage: node sas.js container NAME [PERMS] | blob CONTAINER BLOB | account [PERMS]");
  process.exit(2);
}
console.log(sas.toString());
