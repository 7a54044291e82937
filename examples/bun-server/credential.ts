// The deploy credential, read once by the control plane's `deploy` handler and by the stand-in
// deploy service: from DEPLOY_TOKEN_FILE (a regular file, not a link, that only its owner may read
// or write), else from DEPLOY_TOKEN, which is then removed from this process's environment so that
// no command started from here inherits it. Throws with the reason if there is none.
import fs from "node:fs";

export function loadCredential(): string {
  const file = process.env.DEPLOY_TOKEN_FILE;
  if (file) {
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    } catch (e) {
      throw new Error(`cannot open DEPLOY_TOKEN_FILE ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile() || st.mode & 0o066) throw new Error(`DEPLOY_TOKEN_FILE ${file} must be a regular file of mode 0600`);
      const token = fs.readFileSync(fd, "utf8").trim();
      if (token === "") throw new Error(`DEPLOY_TOKEN_FILE ${file} is empty`);
      return token;
    } finally {
      fs.closeSync(fd);
    }
  }
  const token = process.env.DEPLOY_TOKEN ?? "";
  delete process.env.DEPLOY_TOKEN;
  if (token === "") throw new Error("neither DEPLOY_TOKEN_FILE nor DEPLOY_TOKEN holds the deploy credential");
  return token;
}
