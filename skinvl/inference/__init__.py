"""The inference core: loading, the family table, prompts, batching, decoding and image opening.

generate, evaluation, demo, train and convert call it; it calls none of them.
"""
