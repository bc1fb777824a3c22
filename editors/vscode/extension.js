// The VS Code client of the sealnet language server: it starts `policyc lsp`
// (stdio) for .policy files; everything else happens in the server.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function serverOptions() {
  const config = vscode.workspace.getConfiguration("sealnet");
  const command = config.get("server.command", "policyc");
  const args = config.get("server.args", ["lsp"]);
  return { command, args, transport: TransportKind.stdio };
}

async function start(context) {
  client = new LanguageClient(
    "sealnet",
    "sealnet policy language server",
    serverOptions(),
    {
      documentSelector: [{ scheme: "file", language: "sealnet" }, { scheme: "untitled", language: "sealnet" }],
      outputChannelName: "sealnet",
    },
  );
  try {
    await client.start();
  } catch (err) {
    vscode.window.showErrorMessage(
      `sealnet: could not start \`${serverOptions().command} lsp\` (${err.message}). ` +
        "Set sealnet.server.command to the policyc of your sealnet installation.",
    );
  }
}

async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand("sealnet.restartServer", async () => {
      if (client) {
        await client.stop();
      }
      await start(context);
    }),
  );
  await start(context);
}

async function deactivate() {
  if (client) {
    await client.stop();
  }
}

module.exports = { activate, deactivate };
