"""Tables of the model registry (``amgs.server.models``), created by migration 9 (``migrations.py``)."""

MODEL_TABLES_DDL = """
CREATE TABLE models (
    sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, synthetic INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL, input_size INTEGER, quantization TEXT, training_data TEXT, pain_cutoff REAL,
    manifest_json TEXT NOT NULL, path TEXT NOT NULL, added_at REAL NOT NULL, added_by TEXT, notes TEXT
);
CREATE UNIQUE INDEX models_name_version ON models (name, version);
CREATE TABLE model_evaluations (
    id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, dataset TEXT NOT NULL, n_images INTEGER,
    figures_json TEXT NOT NULL, date TEXT, source TEXT, added_at REAL NOT NULL, UNIQUE (sha256, dataset)
);
CREATE TABLE model_assignments (
    device_id TEXT PRIMARY KEY, active_sha256 TEXT, candidate_sha256 TEXT, updated_at REAL NOT NULL,
    updated_by TEXT, published_at REAL
);
CREATE TABLE model_events (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, device_id TEXT, action TEXT NOT NULL, sha256 TEXT, detail TEXT
);
CREATE TABLE shadow_scores (
    msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, cage_id TEXT NOT NULL, animal_id TEXT, seq INTEGER,
    t REAL NOT NULL, active_sha256 TEXT NOT NULL, candidate_sha256 TEXT NOT NULL, candidate_name TEXT,
    candidate_version TEXT, p_pain_active REAL NOT NULL, label_active TEXT NOT NULL, mgs_au_active REAL,
    inference_ms_active REAL, p_pain REAL NOT NULL, label TEXT NOT NULL, confidence REAL, mgs_au REAL,
    inference_ms REAL
);
CREATE INDEX shadow_scores_candidate_cage ON shadow_scores (candidate_sha256, cage_id, t);
ALTER TABLE devices ADD COLUMN models_json TEXT
"""
MODEL_TABLES = ("models", "model_evaluations", "model_assignments", "model_events", "shadow_scores")
