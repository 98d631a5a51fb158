"""Statistics across patients: correlation, multiple testing, association, specificity, meta-analysis, screen, truth check (never imports anndata)."""
