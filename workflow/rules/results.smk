# The end of each chain: a summary inside the run folder, published under results/.
# The summary's name carries the length, so raising an experiment's length asks for a new one,
# which walks the chain on from its last segment.


localrules:
    finalize,
    publish,
    curves,
    summary,


rule finalize:
    input:
        last_segment,
    output:
        FINAL_PATTERN,
    log:
        FINALIZE_LOG_PATTERN,
    wildcard_constraints:
        length="[0-9]+",
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/finalize.py"


rule publish:
    input:
        lambda wildcards: str(
            run_layout(wildcards.exp).final_summary(EXPERIMENTS[wildcards.exp].length)
        ),
    output:
        summary="results/{exp}/final.json",
        state="results/{exp}/final.pt",
    log:
        "results/{exp}/publish.log",
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/publish.py"


rule curves:
    input:
        "results/{exp}/final.json",
    output:
        report(
            "results/{exp}/curves.png",
            caption="../report/curves.rst",
            category="Curves",
            labels={"experiment": "{exp}"},
        ),
    log:
        "results/{exp}/curves.log",
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/plot.py"


rule summary:
    input:
        expand("results/{exp}/final.json", exp=EXPERIMENTS),
    output:
        plot=report(
            "results/summary.png", caption="../report/summary.rst", category="Summary"
        ),
        table=report(
            "results/summary.tsv", caption="../report/table.rst", category="Summary"
        ),
    log:
        "results/summary.log",
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/plot.py"
