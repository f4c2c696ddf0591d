// The promptlang extension: the grammar and language configuration come from package.json; this file only
// starts the language server (`promptlang lsp`, over stdio) for .prompt files.
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const settings = vscode.workspace.getConfiguration("promptlang");
  const server = {
    command: settings.get("server.command", "promptlang"),
    args: settings.get("server.args", ["lsp"]),
  };
  const documents = {
    documentSelector: [
      { scheme: "file", language: "promptlang" },
      { scheme: "untitled", language: "promptlang" },
    ],
  };
  client = new LanguageClient("promptlang", "promptlang language server", server, documents);
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
