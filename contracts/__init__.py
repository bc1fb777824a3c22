"""Layer 1: the contracts both halves of sealnet share.

The data plane's ABI (`abi`), the bundle format (`bundle`, `manifest`), its
measurement (`measure`) and signature (`signing`), the libbpf binding
(`libbpf`) and the one error type a user's mistake raises (`errors`). Nothing
here imports from the language, the compiler or the runtime.
"""
