"""Patients: per-patient aggregation (sender scores, malignant pseudobulk) and the patient table."""
