"""HMHN: aligned face frames -> BDI-II score (the second paper of depressionkit).

Grid-Wise Attention, Deep Feature Fusion on a from-scratch ResNet-18, multi-head cross
attention (MAB) and attention fusion (AFB) with the partition loss, read shape by shape
in ``shared/design/hmhn.md``. ``hmhn.data`` reads videos or aligned faces (dlib
alignment, OpenCV frames), ``hmhn.layers`` holds the Keras layers, ``hmhn.models``
builds ablation rows A-E, head, grid and kernel variants, ``hmhn.train`` trains and
evaluates at video level, ``python -m hmhn`` is the CLI.
"""
