"""Rule score_receiver_sets: each cargo miRNA's target set, per patient, in the malignant cells."""

from cd8exo.cells.store import malignant_cells, open_cells
from cd8exo.genes import load_symbol_tables
from cd8exo.io.cargo import cargo_target_sets, read_cargo_table
from cd8exo.io.tables import read_gmt, write_gmt, write_table
from cd8exo.log import log_to
from cd8exo.stages.receiver_cells import score_receiver_sets

with log_to(snakemake.log[0]):
    inputs, params, output = snakemake.input, snakemake.params, snakemake.output
    sets, _ = cargo_target_sets(
        read_gmt(inputs.gmt), read_cargo_table(inputs.cargo), gmt=inputs.gmt
    )
    scored = score_receiver_sets(
        malignant_cells(open_cells(inputs.matrix, inputs.h5ad)),
        target_sets=sets,
        sender_signatures=read_gmt(inputs.senders),
        tables=load_symbol_tables(inputs.hgnc_aliases, inputs.ensembl_symbols),
        min_coverage=params.min_coverage,
        n_random_sets=params.n_random_sets,
        rng=params.seed,
        scoring=params.scoring,  # the sender signatures' method and options
    )
    write_table(scored.scores, output.scores)
    write_table(scored.random_sets, output.random_sets)
    write_table(scored.prepared.coverage, output.coverage)
    write_table(scored.prepared.overlap, output.overlap)
    write_gmt(scored.prepared.signatures, output.prepared, description="as scored")
