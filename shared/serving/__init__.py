"""Serving the tiny GPT: a paged KV cache, continuous batching and an HTTP front end (project 18).

``shared.serving.engine`` holds the engine (block allocator, paged attention, copy-on-write forks and the
iteration-level scheduler; Kwon et al. 2023, vLLM; Yu et al. 2022, Orca). The HTTP server and the load
generator live in their own modules, which import their web dependencies themselves: importing this
package imports nothing heavy.
"""
