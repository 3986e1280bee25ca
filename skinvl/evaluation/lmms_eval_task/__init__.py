"""An lmms-eval task for MM-Skin VQA (``mmskin_vqa.yaml`` + :mod:`.utils`); pass this folder to ``--include_path``."""
