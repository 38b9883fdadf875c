"""HMHN's input: face videos in, aligned ``size x size`` RGB face crops and BDI-II labels out.

* :mod:`hmhn.data.video` - evenly spread frame sampling and OpenCV video reading.
* :mod:`hmhn.data.align` - dlib detection + 68 landmarks, eye-based similarity warp
  (:class:`FaceAligner`), per-video alignment with an ``.npz`` cache.
* :mod:`hmhn.data.corpora` - the on-disk layouts of AVEC 2013, AVEC 2014, the
  synthetic corpus and pre-aligned faces; :func:`load_faces`.
* :mod:`hmhn.data.synth` - the bundled synthetic face corpus
  (``python -m hmhn.data.synth --out data/synthetic-faces``).

The layouts are documented in :mod:`hmhn.data.corpora`. dlib and OpenCV are imported
only when first needed.
"""

from hmhn.data.align import FaceAligner, align_video
from hmhn.data.corpora import FaceVideo, load_faces, resolve_corpus_dir
from hmhn.data.video import read_video_frames, sample_frame_indices

__all__ = ["FaceVideo", "sample_frame_indices", "read_video_frames", "FaceAligner",
           "align_video", "load_faces", "resolve_corpus_dir"]
