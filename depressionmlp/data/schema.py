"""OpenFace 2.x FeatureExtraction CSV schema (714 columns, in file order).

OpenFace writes its header with a space after each comma
(``frame, face_id, timestamp, confidence, success, ...``); readers strip it.
The 2-D landmarks used by DepressionMLP are ``x_0..x_67`` / ``y_0..y_67``
(pixels), not the 3-D ``X_/Y_/Z_`` nor the eye landmarks ``eye_lmk_x_*``.
"""

N_LANDMARKS = 68
N_EYE_LANDMARKS = 56

META_COLUMNS = ["frame", "face_id", "timestamp", "confidence", "success"]
GAZE_COLUMNS = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z",
                "gaze_angle_x", "gaze_angle_y"]
EYE_COLUMNS = ([f"eye_lmk_x_{i}" for i in range(N_EYE_LANDMARKS)]
               + [f"eye_lmk_y_{i}" for i in range(N_EYE_LANDMARKS)]
               + [f"eye_lmk_X_{i}" for i in range(N_EYE_LANDMARKS)]
               + [f"eye_lmk_Y_{i}" for i in range(N_EYE_LANDMARKS)]
               + [f"eye_lmk_Z_{i}" for i in range(N_EYE_LANDMARKS)])
POSE_COLUMNS = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
X2D_COLUMNS = [f"x_{i}" for i in range(N_LANDMARKS)]
Y2D_COLUMNS = [f"y_{i}" for i in range(N_LANDMARKS)]
LANDMARK_3D_COLUMNS = ([f"X_{i}" for i in range(N_LANDMARKS)]
                       + [f"Y_{i}" for i in range(N_LANDMARKS)]
                       + [f"Z_{i}" for i in range(N_LANDMARKS)])
PDM_COLUMNS = (["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"]
               + [f"p_{i}" for i in range(34)])
AU_INTENSITY = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
                "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"]
AU_PRESENCE = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
               "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU28", "AU45"]
AU_COLUMNS = [f"{a}_r" for a in AU_INTENSITY] + [f"{a}_c" for a in AU_PRESENCE]  # 35

OPENFACE_COLUMNS = (META_COLUMNS + GAZE_COLUMNS + EYE_COLUMNS + POSE_COLUMNS
                    + X2D_COLUMNS + Y2D_COLUMNS + LANDMARK_3D_COLUMNS + PDM_COLUMNS
                    + AU_COLUMNS)
assert len(OPENFACE_COLUMNS) == 714, len(OPENFACE_COLUMNS)
assert len(AU_COLUMNS) == 35
