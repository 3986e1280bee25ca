"""mm_skin: the torch-free dataset side of mm-skin (release facts, reading, images, tables, cards, Hub push).

Nothing here imports torch or skinvl; ``mm_skin_dataset`` (the builder) and ``skinvl`` import it.
"""

# The one version of the distribution (pyproject.toml reads it statically) and of the builder.
__version__ = "0.1.0"
