"""The language server: one module per feature, wired together in server.py."""

from sealnet.compiler.lsp.server import build_server, serve_stdio

__all__ = ["build_server", "serve_stdio"]
