"""The Train / Infer / Add loop dock widget and its helpers (live mode, points, background
prediction)."""
